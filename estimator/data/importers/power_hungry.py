"""Power Hungry Processing (Luccioni, Jernite, Strubell, FAccT 2024): 92 Hugging Face models through
transformers pipelines on one A100-SXM4-80GB of an AWS p4de node (8 boards), batch 1, 1,000 queries per run.

CodeCarbon 2.3.1 read NVML energy of ALL EIGHT boards and summed it although the pipeline used only cuda:0;
each run logged a 'load model' phase and a 'query model' phase with its own run id. Every task x model gives
two rows (medians over the runs, ~10 each), never mixed:

- ``gpu-boards-summed`` (boards = 8, accelerators = 1): the energy as logged.
- ``gpu-board-nvml`` (boards = 1): the working board alone, by `single_board_joules`, with the idle power
  per board measured in the same run's 'load model' phase (`idle_board_watts`).

Tasks that run one forward pass per query (classification, extractive QA, fill-mask, token classification,
object detection) go to a training table (``power_hungry``); generative tasks (text generation,
summarisation, zero-shot via generation, image captioning, text-to-image) run many passes per query and go to
a validation table (``power_hungry_generative``). Runtime ``hf-pipeline``: one pipeline call per query at
batch 1 including tokenisation / image pre-processing and post-processing.

Graphs (single-pass table): ``model_ref`` is the committed graph of the task model (:data:`PHP_GRAPHS`, built
by ``scripts/export_graphs.py`` from each checkpoint's published config; checkpoints with the same architecture
and head share one graph) and ``family`` its architecture, for leave-family-out. Image models have the fixed
input their image processor feeds. A text pipeline at batch 1 runs each query at its own length (no padding)
and the runs record no lengths, so each text row gets ``seq_len`` = a representative token count of its data
set (:data:`DATASET_TOKENS`, with :func:`representative_tokens`): an assumption, stated in the row's notes.
The generative table keeps ``data/graphs/<id with / as -->.onnx`` (no graph built).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from estimator.data.importers._common import _finish, _need, _read_csv, _round
from estimator.errors import InputFileError

PHP_CITATION = (
    "Luccioni, Jernite, Strubell, 'Power Hungry Processing: Watts Driving the Cost of AI Deployment?', "
    "FAccT 2024, arXiv 2311.16863; github.com/sashavor/co2_inference @ 9ae9895 (MIT)"
)
PHP_BOARDS = 8
PHP_QUERIES_PER_RUN = 1000
KWH_TO_J = 3.6e6
#: Task-dataset prefixes whose pipeline runs one forward pass per query.
SINGLE_PASS_TASKS = ("fillmask", "image_class", "obj_detection", "qa_", "text_classif", "token_classif")

#: Hugging Face checkpoint -> (graph in data/graphs, architecture family, the tokenizer's maximum length).
#: Image models: length None. A checkpoint absent here keeps ``data/graphs/<id with / as -->.onnx``.
PHP_GRAPHS: dict[str, tuple[str, str, int | None]] = {
    "bert-base-uncased": ("php-bert-base-uncased-mlm", "bert", 512),
    "bert-base-cased": ("php-bert-base-cased-mlm", "bert", 512),
    "bert-base-multilingual-cased": ("php-bert-base-multilingual-cased-mlm", "bert", 512),
    "albert-base-v2": ("php-albert-base-v2-mlm", "albert", 512),
    "distilbert-base-uncased": ("php-distilbert-base-uncased-mlm", "distilbert", 512),
    "roberta-base": ("php-roberta-base-mlm", "roberta", 512),
    "xlm-roberta-base": ("php-xlm-roberta-base-mlm", "xlm-roberta", 512),
    "bert-large-uncased-whole-word-masking-finetuned-squad": ("php-bert-large-uncased-qa", "bert", 512),
    "deepset/bert-large-uncased-whole-word-masking-squad2": ("php-bert-large-uncased-qa", "bert", 512),
    "deepset/electra-base-squad2": ("php-electra-base-qa", "electra", 512),
    "deepset/roberta-base-squad2": ("php-roberta-base-qa", "roberta", 512),
    "deepset/tinyroberta-squad2": ("php-tinyroberta-qa", "roberta", 512),
    "distilbert-base-cased-distilled-squad": ("php-distilbert-base-cased-qa", "distilbert", 512),
    "distilbert-base-uncased-distilled-squad": ("php-distilbert-base-uncased-qa", "distilbert", 512),
    "cardiffnlp/twitter-roberta-base-sentiment-latest": ("php-roberta-base-cls", "roberta", 512),
    "cardiffnlp/twitter-xlm-roberta-base-sentiment": ("php-xlm-roberta-base-cls", "xlm-roberta", 512),
    "distilbert-base-uncased-finetuned-sst-2-english": ("php-distilbert-base-uncased-cls", "distilbert", 512),
    "lvwerra/distilbert-imdb": ("php-distilbert-base-uncased-cls", "distilbert", 512),
    "sbcBI/sentiment_analysis_model": ("php-distilbert-base-uncased-cls", "distilbert", 512),
    "finiteautomata/bertweet-base-sentiment-analysis": ("php-bertweet-base-cls", "roberta", 128),
    "nlptown/bert-base-multilingual-uncased-sentiment": (
        "php-bert-base-multilingual-uncased-cls",
        "bert",
        512,
    ),
    "siebert/sentiment-roberta-large-english": ("php-roberta-large-cls", "roberta", 512),
    "Babelscape/wikineural-multilingual-ner": ("php-bert-base-multilingual-cased-ner", "bert", 512),
    "QCRI/bert-base-multilingual-cased-pos-english": ("php-bert-base-multilingual-cased-ner", "bert", 512),
    "Jean-Baptiste/roberta-large-ner-english": ("php-roberta-large-ner", "roberta", 512),
    "dmargutierrez/distilbert-base-multilingual-cased-mapa_coarse-ner": (
        "php-distilbert-base-multilingual-cased-ner",
        "distilbert",
        512,
    ),
    "dslim/bert-base-NER": ("php-bert-base-cased-ner", "bert", 512),
    "dslim/bert-large-NER": ("php-bert-large-cased-ner", "bert", 512),
    "elastic/distilbert-base-cased-finetuned-conll03-english": (
        "php-distilbert-base-cased-ner",
        "distilbert",
        512,
    ),
    "xlm-roberta-large-finetuned-conll03-english": ("php-xlm-roberta-large-ner", "xlm-roberta", 512),
    "facebook/convnextv2-tiny-1k-224": ("php-convnextv2-tiny-224", "convnextv2", None),
    "facebook/convnextv2-tiny-22k-384": ("php-convnextv2-tiny-384", "convnextv2", None),
    "google/mobilenet_v1_0.75_192": ("php-mobilenet-v1-075-192", "mobilenet", None),
    "google/vit-base-patch16-224": ("php-vit-base-224", "vit", None),
    "google/vit-base-patch16-384": ("php-vit-base-384", "vit", None),
    "microsoft/beit-base-patch16-224-pt22k-ft22k": ("php-beit-base-224-22k", "beit", None),
    "microsoft/resnet-18": ("php-resnet-18", "resnet", None),
    "microsoft/resnet-50": ("php-resnet-50", "resnet", None),
    "facebook/detr-resnet-50": ("php-detr-resnet-50", "detr", None),
    "facebook/detr-resnet-101": ("php-detr-resnet-101", "detr", None),
    "polejowska/detr-r50-cd45rb-1ah-6l": ("php-detr-r50-1head", "detr", None),
    "polejowska/detr-r50-cd45rb-8ah-6l-gelu-corrected": ("php-detr-r50-8head-gelu", "detr", None),
    "hustvl/yolos-tiny": ("php-yolos-tiny", "yolos", None),
    "hustvl/yolos-small": ("php-yolos-small", "yolos", None),
    "SenseTime/deformable-detr": ("php-deformable-detr", "deformable-detr", None),
}

_DEBERTA = (
    "the TorchScript export folds DeBERTa's relative-position projections of its (constant) position embeddings"
    " into stored tensors, so the graph omits work PyTorch does on every call (-17.8 % FLOPs for deberta-base at"
    " 128 tokens) and fixes the relative span at the traced length"
)
#: Single-pass checkpoints measured but with no graph, and why (their rows stay, counted as graph missing).
PHP_NOT_BUILT: dict[str, str] = {
    "microsoft/deberta-base": _DEBERTA,
    "timpal0l/mdeberta-v3-base-squad2": _DEBERTA,
    "jozhang97/deta-swin-large": (
        "DETA was removed from transformers (v5 has no DetaConfig), so its Swin-L backbone with two-stage"
        " deformable-DETR heads cannot be rebuilt from a config"
    ),
}

#: Text data set -> (mean words the pipeline receives per query, special tokens the tokenizer adds, source).
#: Words are whitespace-separated; :data:`TOKENS_PER_WORD` turns them into sub-word tokens.
DATASET_TOKENS: dict[str, tuple[float, int, str]] = {
    "text_classif_sst2": (
        19.0,
        2,
        "SST-2 test sentences; lengths/sst2.csv of the source: 28 minus the 9-word prompt",
    ),
    "text_classif_tomatoes": (
        21.0,
        2,
        "Rotten Tomatoes validation; lengths/rotten_tomatoes.csv of the source: 30 minus the 9-word prompt",
    ),
    "text_classif_imdb": (
        230.0,
        2,
        "IMDB test reviews, mean about 230 words (Maas et al. 2011 data), cut at the tokenizer's maximum",
    ),
    "qa_squad": (
        124.0,
        3,
        "SQuAD v1.1 validation question + context; lengths/squad.csv: 134 minus the 10-word prompt",
    ),
    "qa_squadv2": (
        106.0,
        3,
        "SQuAD v2 validation question + context; lengths/squad2.csv: 116 minus the prompt",
    ),
    "qa_sciq": (103.0, 3, "SciQ test question + support passage; lengths/sciq.csv: 113 minus the prompt"),
    "token_classif_conll2003": (
        15.8,
        2,
        "CoNLL-2003 validation: 51,362 tokens in 3,250 sentences (Tjong Kim Sang and De Meulder 2003)",
    ),
    "token_classif_wikiann": (7.5, 2, "WikiANN en test: short Wikipedia sentence fragments, about 7-8 words"),
    "token_classif_record": (170.0, 2, "ReCoRD test passages, about 170 words (Zhang et al. 2018)"),
    "fillmask_bookcorpus": (
        13.3,
        3,
        "BookCorpus sentences with the mask appended: 984 M words in 74 M sentences (Zhu et al. 2015)",
    ),
    "fillmask_c4": (20.0, 2, "C4 documents cut to their first 20 words, the last replaced by the mask"),
    "fillmask_oscar": (20.0, 2, "OSCAR documents cut to their first 20 words, the last replaced by the mask"),
}
#: Sub-word tokens per whitespace word of English text (WordPiece / BPE; an assumption, +-15 %).
TOKENS_PER_WORD = 1.3


def representative_tokens(task_dataset: str, max_length: int | None) -> int | None:
    """Tokens of a representative query of ``task_dataset``: its mean words x :data:`TOKENS_PER_WORD` + the
    special tokens, cut at the tokenizer's ``max_length`` (the pipeline truncates there). None for image data
    sets and for a model without a tokenizer length."""
    entry = DATASET_TOKENS.get(task_dataset)
    if entry is None or max_length is None:
        return None
    words, special, _source = entry
    return min(round(words * TOKENS_PER_WORD) + special, max_length)


def idle_board_watts(load_phase_total_watts: float, boards: int = PHP_BOARDS) -> float:
    """Idle power of one board, W, from the summed NVML power of `boards` boards while a model loads.

    Assumption: while the pipeline loads its model (weights read into host memory) no board computes, so
    all boards draw idle power and it splits evenly between identical boards.
    """
    if boards < 1:
        raise ValueError("boards must be at least 1")
    return load_phase_total_watts / boards


def single_board_joules(summed_joules: float, duration_s: float, idle_w: float, idle_boards: int) -> float:
    """Energy of the one working board, J: the summed energy minus `idle_boards` boards at `idle_w` watts.

    Assumption: the unused boards stay at the idle power measured in the load phase for the whole query
    phase (``duration_s``); the working board's own idle share stays in the result (idle_subtracted False).
    """
    return summed_joules - idle_boards * idle_w * duration_s


def import_power_hungry(path: Path) -> pd.DataFrame:
    """Single-forward-pass tasks of Power Hungry Processing as a training table (J per query)."""
    return _import(Path(path), single_pass=True)


def import_power_hungry_generative(path: Path) -> pd.DataFrame:
    """Generative tasks of Power Hungry Processing as a validation table (J per query)."""
    return _import(Path(path), single_pass=False)


def _runs(folder: Path, log: Counter) -> pd.DataFrame:
    base_file = folder / "base_all_tasks_combined.csv"
    complete = sorted((folder / "data" / "emissions" / "complete").glob("*.csv"))
    if not base_file.is_file() or not complete:
        raise InputFileError(f"{folder} lacks base_all_tasks_combined.csv or data/emissions/complete/*.csv")
    base = _read_csv(base_file)
    _need(
        base,
        ["task_name", "run_id", "duration", "gpu_energy", "gpu_power", "gpu_count", "timestamp"],
        base_file,
    )
    tasks = []
    for file in complete:
        runs = _read_csv(file, usecols=["run_id", "project_name"])
        tasks.append(runs.assign(task_dataset=file.stem))
    tasks = pd.concat(tasks, ignore_index=True).rename(columns={"project_name": "model"})
    query = base[base["task_name"] == "query model"][
        ["run_id", "duration", "gpu_energy", "gpu_count", "timestamp"]
    ]
    load = base[base["task_name"] == "load model"][["run_id", "gpu_power"]].rename(
        columns={"gpu_power": "load_w"}
    )
    runs = tasks.merge(query, on="run_id", how="inner").merge(load, on="run_id", how="left")
    log["dropped: run without a query phase"] += len(tasks) - int(tasks["run_id"].isin(query["run_id"]).sum())
    bad = (runs["gpu_count"] != PHP_BOARDS) | runs["load_w"].isna() | ~(runs["gpu_energy"] > 0)
    log["dropped: run without load phase, energy or 8 boards"] += int(bad.sum())
    runs = runs[~bad].copy()
    runs["summed_j"] = runs["gpu_energy"] * KWH_TO_J
    runs["idle_w"] = [idle_board_watts(w) for w in runs["load_w"]]
    runs["single_j"] = [
        single_board_joules(e, t, i, PHP_BOARDS - 1)
        for e, t, i in zip(runs["summed_j"], runs["duration"], runs["idle_w"], strict=True)
    ]
    negative = ~(runs["single_j"] > 0)
    log["dropped: single-board energy not positive after the idle subtraction"] += int(negative.sum())
    return runs[~negative]


def _import(folder: Path, single_pass: bool) -> pd.DataFrame:
    log: Counter = Counter()
    runs = _runs(folder, log)
    is_single = runs["task_dataset"].str.startswith(SINGLE_PASS_TASKS)
    log["left for the other PHP table (single-pass vs generative)"] += int((is_single != single_pass).sum())
    runs = runs[is_single == single_pass]
    agg = (
        runs.groupby(["task_dataset", "model"])
        .agg(
            repeats=("run_id", "size"),
            duration=("duration", "median"),
            summed_j=("summed_j", "median"),
            single_j=("single_j", "median"),
            single_min=("single_j", "min"),
            single_max=("single_j", "max"),
            idle_w=("idle_w", "median"),
            measured_at=("timestamp", "min"),
        )
        .reset_index()
    )
    graph = [PHP_GRAPHS.get(m) if single_pass else None for m in agg["model"]]
    own_ref = "data/graphs/" + agg["model"].str.replace("/", "--") + ".onnx"
    model_ref = [own_ref[i] if g is None else f"data/graphs/{g[0]}.onnx" for i, g in enumerate(graph)]
    own_family = agg["model"].str.split("/").str[-1].str.split("-").str[0]
    family = [own_family[i] if g is None else g[1] for i, g in enumerate(graph)]
    seq = [
        None if g is None else representative_tokens(t, g[2])
        for g, t in zip(graph, agg["task_dataset"], strict=True)
    ]
    log["single-pass rows without a graph mapping (kept, graph named after the model)"] += sum(
        g is None for g in graph
    ) * int(single_pass)
    input_note = [
        _input_note(t, n) + (f"; no graph: {PHP_NOT_BUILT[m]}" if single_pass and m in PHP_NOT_BUILT else "")
        for t, n, m in zip(agg["task_dataset"], seq, agg["model"], strict=True)
    ]
    frames = []
    for boundary, column, boards in (
        ("gpu-boards-summed", "summed_j", PHP_BOARDS),
        ("gpu-board-nvml", "single_j", 1),
    ):
        per_query = agg[column] / PHP_QUERIES_PER_RUN
        frames.append(
            pd.DataFrame(
                {
                    "model_ref": model_ref,
                    "group": agg["model"],
                    "family": family,
                    "task": agg["task_dataset"],
                    "batch": 1,
                    "dtype": "float32",
                    "hardware": "a100",
                    "runtime": "hf-pipeline",
                    "boundary": boundary,
                    "joules_per_inference": _round(per_query),
                    "joules_per_sample": _round(per_query),
                    "latency_s": _round(agg["duration"] / PHP_QUERIES_PER_RUN),
                    "idle_subtracted": False,
                    "repeats": agg["repeats"],
                    "spread_rel": _round((agg["single_max"] - agg["single_min"]) / agg["single_j"]),
                    "source": "power_hungry",
                    "citation": PHP_CITATION,
                    "measured_at": agg["measured_at"].str[:10],
                    "notes": [
                        (
                            "NVML energy of 8 boards summed, 1 working"
                            if boards > 1
                            else f"single_board_joules: minus 7 boards at {w:.1f} W idle (load phase)"
                        )
                        + "; median of runs of 1,000 pipeline calls"
                        + note
                        for w, note in zip(agg["idle_w"], input_note, strict=True)
                    ],
                    "architecture": agg["model"],
                    "device_name": "NVIDIA A100-SXM4-80GB (AWS p4de)",
                    "accelerators": 1,
                    "power_w": _round(agg[column] / agg["duration"]),
                    "boards": boards,
                    "seq_len": pd.array(seq, dtype="Int64"),
                }
            )
        )
    out = pd.concat(frames, ignore_index=True)
    return _finish(out, ["boundary", "task", "group"], log)


def _input_note(task_dataset: str, tokens: int | None) -> str:
    """The row's note on the input size its graph is bound at (an assumption, never measured)."""
    if tokens is not None:
        return f"; seq_len {tokens}: assumed representative query ({DATASET_TOKENS[task_dataset][2]})"
    if task_dataset.startswith("obj_detection"):
        exact = task_dataset.endswith("_resized")
        return "; image 800 x 1066 (YOLOS-Ti 512 x 682): processor resize of 640 x 480" + (
            " images (the run resized them)" if exact else " (assumed typical image)"
        )
    if task_dataset.startswith("image_class"):
        return "; image at the processor's fixed size"
    return ""
