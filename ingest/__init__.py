"""Ways into the twin: loaders for source formats and the sample-city generator."""
