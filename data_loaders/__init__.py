"""The data side: reading HaGRID (v1 and v2 layouts), class sets, subject splits, landmark
normalisation, the hand graph, the crop step and its manifest, batches for every model, and the
synthetic demonstration set. See ``docs/architecture.md``; each module is imported on its own
(``from data_loaders.hagrid import load_hagrid``) so light steps stay light.
"""
