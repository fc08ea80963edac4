"""Weights in and out, below the model: reading files safely (``files``), the one mapping of
foreign checkpoints (``convert``), loading into a model class passed in (``load``), exports
(``export``) and the packaged models (``assets``). Nothing here imports ``finelip_kit.model``:
``FineLIP.from_*`` call into this layer, and ``finelip_kit.pretrained`` (the public functions
and the resolver ``load_model``) sits above both."""
