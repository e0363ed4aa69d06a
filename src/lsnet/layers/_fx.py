"""torch.fx tracing test shared by layers and models (input checks that branch on shapes skip while tracing)."""
import torch

# True while torch.fx symbolically traces (timm / torchvision feature extraction), not under torch.compile/export;
# older torch only has is_fx_tracing. Call it outside TorchScript only (guard with torch.jit.is_scripting()).
fx_tracing = getattr(torch.fx._symbolic_trace, "is_fx_symbolic_tracing", torch.fx._symbolic_trace.is_fx_tracing)
