"""tl_embspace: read every parameter of a TransformerLens model in embedding space."""
