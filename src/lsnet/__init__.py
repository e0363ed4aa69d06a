"""lsnet: LSNet and its large-kernel relatives as timm models, with a portable SKA op."""
