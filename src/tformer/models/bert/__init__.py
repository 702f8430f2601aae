"""BERT-style encoder-only models (Devlin et al., 2019), one concept a module: the configurations (``config``),
the encoder (``model``), its masked-LM and classification heads (``heads``), the span head for extractive question
answering (``span``) and sentence embeddings (``sentences``)."""

from tformer.models.bert.config import ClassifierConfig, EncoderOnlyConfig
from tformer.models.bert.heads import EncoderOnlyForClassification, EncoderOnlyForMaskedLM
from tformer.models.bert.model import EncoderOnly, key_mask, mean_pool
from tformer.models.bert.sentences import encode_sentences, sentence_embeddings
from tformer.models.bert.span import EncoderOnlyForQuestionAnswering, best_spans

__all__ = ["ClassifierConfig", "EncoderOnly", "EncoderOnlyConfig", "EncoderOnlyForClassification",
           "EncoderOnlyForMaskedLM", "EncoderOnlyForQuestionAnswering", "best_spans", "encode_sentences", "key_mask",
           "mean_pool", "sentence_embeddings"]
