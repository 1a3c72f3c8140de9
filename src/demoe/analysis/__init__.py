"""Analysis of models: weight similarity (Pearson, CKA), expert specialisation, encoder-feature
t-SNE, and the plots of the paper.

Pure functions live in `similarity`; `features` runs the encoder; `plots` writes PNG files. The
router study and the result tables are what `demoe eval` reports, so they live in
`demoe.evaluation` (`router`, `tables`), which analysis may use but never the reverse.
"""
