"""Analysis of models: weight similarity (Pearson, CKA), expert specialisation, router study,
encoder-feature t-SNE, and the plots and tables of the paper.

Pure functions live in `similarity`, `router` and `tables`; `features` runs the encoder;
`plots` writes PNG files.
"""
