"""Power Hungry Processing (Luccioni, Jernite, Strubell, FAccT 2024): the task models its transformers pipelines
ran on one A100 at batch 1, as specs for ``scripts/export_graphs.py``.

DeBERTa (microsoft/deberta-base, timpal0l/mdeberta-v3-base-squad2) is left out: the TorchScript export folds its
relative-position projections into stored tensors (``PHP_NOT_BUILT`` in the importer says so per row).

Each checkpoint is rebuilt from its Config class with the sizes its model card / config publishes (no hub
download), with the head the pipeline loads; checkpoints with the same architecture and head share one graph
(``measured_as`` lists them). The rows that use each graph: ``PHP_GRAPHS`` in
``estimator/data/importers/power_hungry.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

PHP = "Power Hungry Processing (Luccioni et al. 2024), transformers pipeline '{task}' at batch 1"
PHP_TEXT = (
    "; rebuilt from its config (random weights), the task model's graph called with input_ids and an all-ones"
    " mask; the pipeline's tokenisation and post-processing are not in the graph; symbolic sequence, each row"
    " binds its dataset's representative token count (an assumption: estimator/data/importers/power_hungry.py)"
)
PHP_IMAGE = (
    "; rebuilt from its config (random weights); pixel_values at the size the model's image processor feeds;"
    " image decoding, resizing and post-processing are not in the graph"
)
PHP_DETECT = (
    "; rebuilt from its config (random weights, backbone built by timm without pretrained weights);"
    " pixel_values {h}x{w}: the processor's resize (shortest edge {short}, longest 1333) of a 640x480 image, exact"
    " for the *_resized datasets and an assumption (typical 4:3 image) for the others; box post-processing"
    " (the pipeline's thresholding) is not in the graph"
)
BERT_LARGE = {
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
}
ROBERTA = {"vocab_size": 50265, "max_position_embeddings": 514, "type_vocab_size": 1, "layer_norm_eps": 1e-5}
XLMR = {**ROBERTA, "vocab_size": 250002}
ELECTRA_BASE = {
    "embedding_size": 768,
    "hidden_size": 768,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
}
ALBERT_BASE = {"hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072}
DETR_BACKBONE = {"model_type": "timm_backbone", "out_indices": [1, 2, 3, 4]}


def _php(
    hf: Callable,
    spec_cls: type,
    name: str,
    cls: str,
    config_cls: str,
    config: dict,
    measured_as: str,
    task: str,
    image: tuple[int, int] | None = None,
    note: str = "",
) -> Any:
    """A task model measured by Power Hungry Processing (text: symbolic sequence; vision: fixed ``image``)."""
    if image is None:
        tail = PHP_TEXT
    elif task == "object-detection":
        tail = PHP_DETECT.format(h=image[0], w=image[1], short=image[0])
    else:
        tail = PHP_IMAGE
    difference = PHP.format(task=task) + tail + (f"; {note}" if note else "")
    spec = hf(name, cls, config_cls, config, measured_as, difference)
    cfg = {**(spec.config or {}), "task": True}
    size = (1, 3, *image) if image else spec.input
    return spec_cls(spec.name, spec.source, spec.constructor, size, measured_as, difference, cfg)


FILL, QA, TEXT, TOKEN = "fill-mask", "question-answering", "text-classification", "token-classification"
IMAGE, DETECT = "image-classification", "object-detection"


def php_specs(hf: Callable, spec_cls: type) -> list:
    """The Spec of every Power Hungry Processing task model (``hf``: export_graphs.hf; ``spec_cls``: its Spec)."""

    def php(*args: Any, **kwargs: Any) -> Any:
        return _php(hf, spec_cls, *args, **kwargs)

    return [
        # fill-mask (BookCorpus, C4, OSCAR)
        php("php-bert-base-uncased-mlm", "BertForMaskedLM", "BertConfig", {}, "bert-base-uncased", FILL),
        php(
            "php-bert-base-cased-mlm",
            "BertForMaskedLM",
            "BertConfig",
            {"vocab_size": 28996},
            "bert-base-cased",
            FILL,
        ),
        php(
            "php-bert-base-multilingual-cased-mlm",
            "BertForMaskedLM",
            "BertConfig",
            {"vocab_size": 119547},
            "bert-base-multilingual-cased",
            FILL,
        ),
        php(
            "php-albert-base-v2-mlm",
            "AlbertForMaskedLM",
            "AlbertConfig",
            {**ALBERT_BASE, "vocab_size": 30000},
            "albert-base-v2",
            FILL,
        ),
        php(
            "php-distilbert-base-uncased-mlm",
            "DistilBertForMaskedLM",
            "DistilBertConfig",
            {},
            "distilbert-base-uncased",
            FILL,
        ),
        php("php-roberta-base-mlm", "RobertaForMaskedLM", "RobertaConfig", ROBERTA, "roberta-base", FILL),
        php(
            "php-xlm-roberta-base-mlm",
            "XLMRobertaForMaskedLM",
            "XLMRobertaConfig",
            XLMR,
            "xlm-roberta-base",
            FILL,
        ),
        # question answering (SQuAD, SQuAD v2, SciQ)
        php(
            "php-bert-large-uncased-qa",
            "BertForQuestionAnswering",
            "BertConfig",
            BERT_LARGE,
            "bert-large-uncased-whole-word-masking-finetuned-squad, deepset/bert-large-uncased-whole-word-masking-squad2",
            QA,
        ),
        php(
            "php-electra-base-qa",
            "ElectraForQuestionAnswering",
            "ElectraConfig",
            ELECTRA_BASE,
            "deepset/electra-base-squad2",
            QA,
        ),
        php(
            "php-roberta-base-qa",
            "RobertaForQuestionAnswering",
            "RobertaConfig",
            ROBERTA,
            "deepset/roberta-base-squad2",
            QA,
        ),
        php(
            "php-tinyroberta-qa",
            "RobertaForQuestionAnswering",
            "RobertaConfig",
            {**ROBERTA, "num_hidden_layers": 6},
            "deepset/tinyroberta-squad2",
            QA,
            note="6 layers of roberta-base's width (model card)",
        ),
        php(
            "php-distilbert-base-cased-qa",
            "DistilBertForQuestionAnswering",
            "DistilBertConfig",
            {"vocab_size": 28996},
            "distilbert-base-cased-distilled-squad",
            QA,
        ),
        php(
            "php-distilbert-base-uncased-qa",
            "DistilBertForQuestionAnswering",
            "DistilBertConfig",
            {},
            "distilbert-base-uncased-distilled-squad",
            QA,
        ),
        # text classification (IMDB, SST-2, Rotten Tomatoes)
        php(
            "php-roberta-base-cls",
            "RobertaForSequenceClassification",
            "RobertaConfig",
            {**ROBERTA, "num_labels": 3},
            "cardiffnlp/twitter-roberta-base-sentiment-latest",
            TEXT,
        ),
        php(
            "php-xlm-roberta-base-cls",
            "XLMRobertaForSequenceClassification",
            "XLMRobertaConfig",
            {**XLMR, "num_labels": 3},
            "cardiffnlp/twitter-xlm-roberta-base-sentiment",
            TEXT,
        ),
        php(
            "php-distilbert-base-uncased-cls",
            "DistilBertForSequenceClassification",
            "DistilBertConfig",
            {"num_labels": 2},
            "distilbert-base-uncased-finetuned-sst-2-english, lvwerra/distilbert-imdb, sbcBI/sentiment_analysis_model",
            TEXT,
            note="sbcBI/sentiment_analysis_model taken as a DistilBERT-base fine-tune (its card names no base; its "
            "latency matches the DistilBERT rows, not BERT-base's)",
        ),
        php(
            "php-bertweet-base-cls",
            "RobertaForSequenceClassification",
            "RobertaConfig",
            {**ROBERTA, "vocab_size": 64001, "max_position_embeddings": 130, "num_labels": 3},
            "finiteautomata/bertweet-base-sentiment-analysis",
            TEXT,
            note="BERTweet: RoBERTa-base with a 64,001-token vocabulary and 128 positions",
        ),
        php(
            "php-bert-base-multilingual-uncased-cls",
            "BertForSequenceClassification",
            "BertConfig",
            {"vocab_size": 105879, "num_labels": 5},
            "nlptown/bert-base-multilingual-uncased-sentiment",
            TEXT,
        ),
        php(
            "php-roberta-large-cls",
            "RobertaForSequenceClassification",
            "RobertaConfig",
            {**ROBERTA, **BERT_LARGE, "num_labels": 2},
            "siebert/sentiment-roberta-large-english",
            TEXT,
        ),
        # token classification (CoNLL-2003, WikiANN, ReCoRD)
        php(
            "php-bert-base-multilingual-cased-ner",
            "BertForTokenClassification",
            "BertConfig",
            {"vocab_size": 119547, "num_labels": 9},
            "Babelscape/wikineural-multilingual-ner, QCRI/bert-base-multilingual-cased-pos-english",
            TOKEN,
            note="one graph for both (9 labels; the POS tagger's larger label set changes only the last Linear)",
        ),
        php(
            "php-roberta-large-ner",
            "RobertaForTokenClassification",
            "RobertaConfig",
            {**ROBERTA, **BERT_LARGE, "num_labels": 5},
            "Jean-Baptiste/roberta-large-ner-english",
            TOKEN,
        ),
        php(
            "php-distilbert-base-multilingual-cased-ner",
            "DistilBertForTokenClassification",
            "DistilBertConfig",
            {"vocab_size": 119547, "num_labels": 9},
            "dmargutierrez/distilbert-base-multilingual-cased-mapa_coarse-ner",
            TOKEN,
        ),
        php(
            "php-bert-base-cased-ner",
            "BertForTokenClassification",
            "BertConfig",
            {"vocab_size": 28996, "num_labels": 9},
            "dslim/bert-base-NER",
            TOKEN,
        ),
        php(
            "php-bert-large-cased-ner",
            "BertForTokenClassification",
            "BertConfig",
            {**BERT_LARGE, "vocab_size": 28996, "num_labels": 9},
            "dslim/bert-large-NER",
            TOKEN,
        ),
        php(
            "php-distilbert-base-cased-ner",
            "DistilBertForTokenClassification",
            "DistilBertConfig",
            {"vocab_size": 28996, "num_labels": 9},
            "elastic/distilbert-base-cased-finetuned-conll03-english",
            TOKEN,
        ),
        php(
            "php-xlm-roberta-large-ner",
            "XLMRobertaForTokenClassification",
            "XLMRobertaConfig",
            {**XLMR, **BERT_LARGE, "num_labels": 8},
            "xlm-roberta-large-finetuned-conll03-english",
            TOKEN,
        ),
        # image classification (ImageNet, CIFAR-10, CIFAR-100; original and resized to 640x480)
        php(
            "php-convnextv2-tiny-224",
            "ConvNextV2ForImageClassification",
            "ConvNextV2Config",
            {"num_labels": 1000},
            "facebook/convnextv2-tiny-1k-224",
            IMAGE,
            (224, 224),
        ),
        php(
            "php-convnextv2-tiny-384",
            "ConvNextV2ForImageClassification",
            "ConvNextV2Config",
            {"num_labels": 1000, "image_size": 384},
            "facebook/convnextv2-tiny-22k-384",
            IMAGE,
            (384, 384),
        ),
        php(
            "php-mobilenet-v1-075-192",
            "MobileNetV1ForImageClassification",
            "MobileNetV1Config",
            {"depth_multiplier": 0.75, "image_size": 192, "num_labels": 1001},
            "google/mobilenet_v1_0.75_192",
            IMAGE,
            (192, 192),
        ),
        php(
            "php-vit-base-224",
            "ViTForImageClassification",
            "ViTConfig",
            {"num_labels": 1000},
            "google/vit-base-patch16-224",
            IMAGE,
            (224, 224),
        ),
        php(
            "php-vit-base-384",
            "ViTForImageClassification",
            "ViTConfig",
            {"num_labels": 1000, "image_size": 384},
            "google/vit-base-patch16-384",
            IMAGE,
            (384, 384),
        ),
        php(
            "php-beit-base-224-22k",
            "BeitForImageClassification",
            "BeitConfig",
            {
                "use_relative_position_bias": True,
                "use_mean_pooling": True,
                "layer_scale_init_value": 0.1,
                "num_labels": 21841,
            },
            "microsoft/beit-base-patch16-224-pt22k-ft22k",
            IMAGE,
            (224, 224),
        ),
        php(
            "php-resnet-18",
            "ResNetForImageClassification",
            "ResNetConfig",
            {
                "layer_type": "basic",
                "depths": [2, 2, 2, 2],
                "hidden_sizes": [64, 128, 256, 512],
                "num_labels": 1000,
            },
            "microsoft/resnet-18",
            IMAGE,
            (224, 224),
        ),
        php(
            "php-resnet-50",
            "ResNetForImageClassification",
            "ResNetConfig",
            {"num_labels": 1000},
            "microsoft/resnet-50",
            IMAGE,
            (224, 224),
        ),
        # object detection (COCO, CPPE-5, Visual Genome; original and resized to 640x480)
        php(
            "php-detr-resnet-50",
            "DetrForObjectDetection",
            "DetrConfig",
            {"num_labels": 91},
            "facebook/detr-resnet-50",
            DETECT,
            (800, 1066),
        ),
        php(
            "php-detr-resnet-101",
            "DetrForObjectDetection",
            "DetrConfig",
            {"num_labels": 91, "backbone_config": {**DETR_BACKBONE, "backbone": "resnet101"}},
            "facebook/detr-resnet-101",
            DETECT,
            (800, 1066),
        ),
        php(
            "php-detr-r50-1head",
            "DetrForObjectDetection",
            "DetrConfig",
            {"num_labels": 2, "encoder_attention_heads": 1, "decoder_attention_heads": 1},
            "polejowska/detr-r50-cd45rb-1ah-6l",
            DETECT,
            (800, 1066),
            note="1 attention head and 6 layers as the checkpoint's name says; 2 labels assumed",
        ),
        php(
            "php-detr-r50-8head-gelu",
            "DetrForObjectDetection",
            "DetrConfig",
            {"num_labels": 2, "activation_function": "gelu"},
            "polejowska/detr-r50-cd45rb-8ah-6l-gelu-corrected",
            DETECT,
            (800, 1066),
            note="8 heads, 6 layers, GELU as the checkpoint's name says; 2 labels assumed",
        ),
        php(
            "php-yolos-tiny",
            "YolosForObjectDetection",
            "YolosConfig",
            {
                "hidden_size": 192,
                "num_attention_heads": 3,
                "intermediate_size": 768,
                "image_size": [800, 1333],
                "use_mid_position_embeddings": False,
                "num_labels": 91,
            },
            "hustvl/yolos-tiny",
            DETECT,
            (512, 682),
            note="YOLOS-Ti's input is 512 x * (Fang et al. 2021, Table 1), not DETR's 800; no mid-layer"
            " position embeddings (as recalled from its config, not checked)",
        ),
        php(
            "php-yolos-small",
            "YolosForObjectDetection",
            "YolosConfig",
            {
                "hidden_size": 384,
                "num_attention_heads": 6,
                "intermediate_size": 1536,
                "num_labels": 91,
            },
            "hustvl/yolos-small",
            DETECT,
            (800, 1066),
            note="position-embedding tables at YolosConfig's default 512 x 864 (transformers v5 fails on 800 x 1333"
            " here); the forward pass interpolates them to the input, so only the stored parameters differ",
        ),
        php(
            "php-deformable-detr",
            "DeformableDetrForObjectDetection",
            "DeformableDetrConfig",
            {"num_labels": 91},
            "SenseTime/deformable-detr",
            DETECT,
            (800, 1066),
        ),
    ]
