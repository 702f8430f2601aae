"""Weights in from (and out to) other toolkits; each mapping is tested against the original model."""

from tformer.interop.bert import config_from_bert, from_hf_bert, load_bert_folder, load_bert_state_dict
from tformer.interop.conformer import config_from_hf_wav2vec2_conformer, from_hf_wav2vec2_conformer_layers
from tformer.interop.gpt2 import config_from_gpt2, from_hf_gpt2
from tformer.interop.marian import config_from_marian, from_hf_marian
from tformer.interop.swin import config_from_hf_swin, from_hf_swin
from tformer.interop.t5 import config_from_t5, from_hf_t5
from tformer.interop.vit import config_from_hf_vit, from_hf_vit

__all__ = [
    "config_from_bert", "config_from_gpt2", "config_from_hf_wav2vec2_conformer", "config_from_marian",
    "config_from_t5", "config_from_hf_swin", "config_from_hf_vit", "from_hf_bert", "from_hf_gpt2", "from_hf_marian",
    "from_hf_swin", "from_hf_t5", "from_hf_vit", "from_hf_wav2vec2_conformer_layers", "load_bert_folder",
    "load_bert_state_dict",
]
