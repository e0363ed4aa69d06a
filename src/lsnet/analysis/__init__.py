"""Analysis tools: FLOPs/MACs, effective receptive fields, aggregation-weight maps."""
