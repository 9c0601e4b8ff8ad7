"""A plan -> its nn.Module (ComposedNet), its backbone form (FeatureNet), built once on any device."""
