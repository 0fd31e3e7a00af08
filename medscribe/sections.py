"""The typed model of each `medscribe.toml` section (`[paths]`, `[data]`, ..., `[serve]`): one `Section` per stage.

Every section forbids unknown keys (a typo is an error, not a silently ignored value) and validates assignments.
`medscribe.settings` assembles them into `Settings` and owns the precedence rules and loading; import the
sections from there (`from medscribe.settings import SftSection` works) or from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


class Section(BaseModel):
    """Base of every settings section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PathsSection(Section):
    artifacts: Path = Path("artifacts")
    data: Path = Path("artifacts/data")
    index: Path = Path("artifacts/index")
    sft: Path = Path("artifacts/sft")
    ask: Path = Path("artifacts/ask")
    eval: Path = Path("artifacts/eval")
    models: Path = Path("artifacts/models")


class PhiSection(Section):
    """PHI de-identification (medscribe.phi, docs/phi.md)."""

    enabled: bool = True
    # tag: "[NAME]", "[DATE]", ...; pseudonym: consistent realistic surrogates (needs the salt below)
    mode: Literal["tag", "pseudonym"] = "tag"
    # per PHI type (NAME, DATE, AGE, PHONE, EMAIL, URL, IP, SNILS, INN, OMS, PASSPORT, ID, ADDRESS, ORG)
    per_type: dict[str, Literal["tag", "pseudonym", "keep"]] = Field(default_factory=dict)
    columns: dict[str, Literal["drop", "pseudonymize", "scrub"]] = Field(default_factory=dict)
    # natasha's Russian NER on top of the rules: ~100x slower, needs `pip install natasha`
    ner: bool = False
    # HMAC key of the surrogates; only from the environment (MEDSCRIBE_DATA__PHI__SALT), never written anywhere
    salt: SecretStr | None = None


class OcrSection(Section):
    """OCR of scanned PDFs and images (medscribe/documents.py), for `data` inputs and `index` knowledge documents."""

    languages: str = "eng+rus"  # Tesseract language packs, "+"-joined
    # Pages whose mean word confidence (0-100, Tesseract image_to_data) is lower are rejected with the reason.
    min_confidence: float = Field(default=60.0, ge=0, le=100)
    dpi: int = Field(default=300, ge=72, le=1200)  # rendering of PDF pages without a text layer
    tesseract_cmd: str | None = None  # default: `tesseract` on PATH


class DocumentsSection(Section):
    """Scanned/PDF reports as `data` inputs: one row per file (data/scans.py)."""

    # Field the whole text goes to when no section heading is found; None = finding (report) / question (qa).
    text_field: str | None = None
    # field -> headings that start its section ("Findings:", "Заключение:"); {} = built-in English/Russian ones.
    sections: dict[str, list[str]] = Field(default_factory=dict)
    # A regular expression with named groups (finding, conclusion, organ, ...) instead of the headings.
    pattern: str | None = None


class ChatsSection(Section):
    """Chat exports (Telegram JSON, WhatsApp TXT, JSONL) -> multi-turn samples (data/chats.py, data/chat_samples.py)."""

    enabled: bool = False  # true: data.inputs are chat exports, and `medscribe data` builds dialogue samples
    assistant: list[str] = Field(default_factory=list)  # author names (or Telegram from_id) that are the assistant
    gap_minutes: float = Field(default=360, ge=0)  # a longer pause starts a new dialogue; 0 = never
    context_tokens: int = Field(default=2048, ge=32)  # budget of one sample: system + context + answer
    tokenizer: str | None = None  # local tokenizer folder to count tokens; None = ceil(characters / 3) + 4 per turn
    loss: Literal["last", "all"] = "last"  # last: a sample per assistant turn; all: a sample per dialogue window
    system: str | None = None  # system prompt of the samples; None = prompts.DIALOGUE_SYSTEM
    date_order: Literal["auto", "dmy", "mdy"] = "auto"  # WhatsApp dates
    test_fraction: float = Field(default=0.1, ge=0, lt=1)  # share of dialogues in test (eval: data.eval_fraction)


class DataSection(Section):
    task: Literal["report", "qa"] = "report"
    inputs: list[str] = Field(default_factory=lambda: ["data/raw"])
    columns: dict[str, str] = Field(default_factory=dict)
    sheet: str | None = None
    csv_separator: str | None = None
    encoding: str | None = None
    value_maps: dict[str, dict[str, str]] = Field(default_factory=dict)
    modality_from_folder: bool = False
    specialty_from_filename: bool = True
    min_chars: int = Field(default=3, ge=0)
    # Longer inputs/targets are rejected as `too_long` (a broken export's 1.6 MB "finding"); 0 = no limit.
    max_chars: int = Field(default=20_000, ge=0)
    # Files whose name (or a folder of whose path) starts with "." inside an input folder are skipped unless true.
    include_hidden: bool = False
    near_duplicate_threshold: float = Field(default=0.95, gt=0, le=1)
    chat_format: Literal["messages", "sharegpt", "alpaca"] = "messages"
    seed: int = 42
    eval_fraction: float = Field(default=0.1, ge=0, lt=1)
    test_per_group: int = Field(default=20, ge=0)
    group_by: Literal["specialty", "organ", "modality"] = "specialty"
    # What keeps rows in one split besides the normalized input (always): "both" = also equal normalized
    # targets, a column = also equal values of it; "auto" = "input" for report, "both" for qa (data/splits.py)
    split_group_by: Literal["auto", "input", "both", "source", "organ", "modality", "specialty"] = "auto"
    train_fractions: dict[str, float] = Field(default_factory=dict)
    # Processes for PHI scrubbing of large exports (>= 20k distinct texts) and threads for OCR (one Tesseract
    # each); 0 = one per CPU core, at most 8.
    workers: int = Field(default=0, ge=0)
    phi: PhiSection = Field(default_factory=PhiSection)
    ocr: OcrSection = Field(default_factory=OcrSection)
    documents: DocumentsSection = Field(default_factory=DocumentsSection)
    chats: ChatsSection = Field(default_factory=ChatsSection)


class PromptSection(Section):
    variant: Literal["simple", "detailed", "cot"] = "detailed"
    system: str | None = None
    user_template: str | None = None
    context: Literal["few_shot", "system"] = "few_shot"
    json_answer: bool = True


class IndexSection(Section):
    embedding_model: str = "intfloat/multilingual-e5-base"
    query_prefix: str | None = None
    passage_prefix: str | None = None
    collection: str = "medscribe"
    server_url: str | None = None
    batch_size: int = Field(default=64, ge=1)
    device: str = "auto"
    # Where Chroma writes run during a build: "auto" = a child process for large embedded builds (Chroma
    # holds the GIL while it writes, see index/writer.py), a thread otherwise; "thread" if processes are barred.
    writer: Literal["auto", "process", "thread"] = "auto"
    knowledge: list[str] = Field(default_factory=list)
    chunk_size: int = Field(default=800, ge=50)
    chunk_overlap: int = Field(default=100, ge=0)
    k: int = Field(default=3, ge=0)
    threshold: float | None = Field(default=None, ge=-1, le=1)  # cosine similarity
    siblings: int = Field(default=0, ge=0)
    hybrid: bool = False
    rerank_model: str | None = None
    # Dense search: "exact" (every stored vector; the same hits in every run), "hnsw" (Chroma's approximate graph,
    # whose results differ between processes), "auto" = exact up to 100,000 entries (index/exact.py).
    search: Literal["auto", "exact", "hnsw"] = "auto"


class AskSection(Section):
    backend: Literal["openai", "local"] = "openai"
    base_url: str | None = "http://127.0.0.1:8000/v1"
    model: str = "Qwen/Qwen2.5-7B-Instruct"
    api_key: SecretStr | None = None
    local_model: str = "Qwen/Qwen2.5-7B-Instruct"
    adapter: str | None = None
    k: int | None = Field(default=None, ge=0)
    concurrency: int = Field(default=16, ge=1)
    timeout: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=5, ge=0)
    max_new_tokens: int = Field(default=256, ge=1)
    temperature: float = Field(default=0.0, ge=0)
    batch_size: int = Field(default=8, ge=1)
    json_mode: Literal["auto", "schema", "prompt"] = "auto"
    device: str = "auto"
    # Exponential backoff base (seconds) between retries of 429/5xx/timeouts/dropped connections;
    # a server's Retry-After wins when it is shorter than max_backoff.
    retry_backoff: float = Field(default=1.0, ge=0)
    max_backoff: float = Field(default=30.0, ge=0)
    # Batch input column mapping: medscribe field -> column in the input file (id, input, target, organ,
    # modality, specialty). Unmapped fields are read from a column of the same name when present.
    columns: dict[str, str] = Field(default_factory=dict)
    # Record fields whose value must match in retrieved cases (e.g. ["organ"]); empty = no filter.
    filter_fields: list[str] = Field(default_factory=list)
    # generate: the model answers; copy: the nearest retrieved case's answer (no model; the retrieval-copy
    # baseline); copy_or_generate: copy when that case's cosine is >= copy_threshold, generate otherwise.
    mode: Literal["generate", "copy", "copy_or_generate"] = "generate"
    copy_threshold: float | None = Field(default=None, ge=-1, le=1)


class SftStageSection(Section):
    """One stage of an sft curriculum (`[[sft.stages]]`, medscribe/sft/curriculum.py): trained after the stage
    before it, on the same adapter (or, after a stage with `merge = true`, a fresh adapter on the merged model).
    Unset values are the `[sft]` ones."""

    name: str = Field(pattern=r"^[\w.-]+$")
    # Split file (JSONL rows like paths.data/train.jsonl); None = paths.data/train.jsonl. Relative to the cwd.
    data: str | None = None
    # Row field -> values kept (e.g. {task = ["qa"]}, {organ = ["печень"]}); {} = every row.
    where: dict[str, list[str]] = Field(default_factory=dict)
    # single: rows with one user turn (report/qa, two-turn dialogues); multi: dialogues with earlier turns.
    turns: Literal["any", "single", "multi"] = "any"
    # Knowledge documents (files, folders, globs: TXT/MD/HTML/PDF/DOCX, like index.knowledge) trained as plain
    # text, loss on every token, chunked like the index; instead of `data` rows (two-stage LoRA's stage 1).
    text: list[str] = Field(default_factory=list)
    epochs: float | None = Field(default=None, gt=0)
    max_steps: int | None = None
    learning_rate: float | None = Field(default=None, gt=0)
    target_modules: list[str] | None = None  # may differ from the stage before only after a merge
    rag_context: bool | None = None
    # Hard cases: an eval output folder (or ask run) of the model's answers on these rows; the stage keeps the
    # rows that scored below sft.pairs_threshold on sft.pairs_metric there (e.g. the rows an SFT run got wrong).
    hard_from_eval: str | None = None
    # Merge this stage's adapter into its base (16-bit); the next stage trains a fresh adapter on the merged model.
    merge: bool = False


class SftSection(Section):
    backend: Literal["auto", "unsloth", "hf"] = "auto"
    base_model: str = "Qwen/Qwen2.5-7B-Instruct"
    max_seq_length: int = Field(default=2048, ge=16)
    # Vision-language runs (image rows, sft/vision.py): the most pixels an image is resized to (Qwen2-VL: one
    # token per 28x28 pixels, so this caps the tokens an image costs); None = the processor's own cap.
    image_max_pixels: int | None = Field(default=None, ge=784)
    load_in_4bit: bool = True
    lora_r: int = Field(default=16, ge=1)
    lora_alpha: int = Field(default=32, ge=1)
    lora_dropout: float = Field(default=0.0, ge=0, lt=1)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    epochs: float = Field(default=2.0, gt=0)
    max_steps: int = -1
    learning_rate: float = Field(default=2e-4, gt=0)
    lr_scheduler: str = "cosine"
    warmup_ratio: float = Field(default=0.05, ge=0, lt=1)
    batch_size: int = Field(default=4, ge=1)
    grad_accum: int = Field(default=4, ge=1)
    packing: bool = False
    eval_steps: int = Field(default=50, ge=1)
    # Evaluations without improvement before stopping; 0 disables early stopping (the best checkpoint is still kept).
    early_stopping_patience: int | None = Field(default=3, ge=0)
    # Minimum eval-loss improvement that resets the patience counter.
    early_stopping_threshold: float = Field(default=0.0, ge=0)
    seed: int = 42
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    # hf backend on CPU: bf16 where native, no 4-bit/checkpointing where RAM allows, padding-free per-row
    # attention, LM head on labelled tokens only (sft/cpu_fast.py). "auto": on for hf on CPU; false: plain TRL.
    cpu_fast: Literal["auto"] | bool = "auto"
    # A faster malloc for CPU training (sft/allocator.py): "auto" = the `medscribe` command restarts itself under
    # tcmalloc (else jemalloc) when it trains on a CPU and one is installed (~20 % more tokens/s); "tcmalloc" /
    # "jemalloc" = required; "system" = glibc's.
    cpu_allocator: Literal["auto", "tcmalloc", "jemalloc", "system"] = "auto"
    rag_context: bool = False
    # Retrieved cases per training prompt; None = what serving shows (ask.k, else index.k).
    rag_k: int | None = Field(default=None, ge=1)
    merge: bool = False
    report_to: Literal["tensorboard", "wandb", "none"] = "tensorboard"
    # Run folder name under paths.sft (default: a UTC timestamp); `--resume` without it picks the newest run.
    run_name: str | None = None
    # Jinja chat template (text, or a path to a .jinja file) for base models whose tokenizer has none.
    chat_template: str | None = None
    gradient_checkpointing: bool = True
    logging_steps: int = Field(default=10, ge=1)
    save_total_limit: int = Field(default=2, ge=1)
    weight_decay: float = Field(default=0.0, ge=0)
    # Eval rows scored every eval_steps: a bounded slice keeps evaluation cheap on big eval sets.
    max_eval_samples: int | None = Field(default=256, ge=1)
    merge_dtype: Literal["bf16", "fp16"] = "bf16"
    # GGUF quantization for the merged model (e.g. "q4_k_m"); needs the unsloth backend on a CUDA GPU.
    gguf_quantization: str | None = None
    # `medscribe sft remote`: an OpenAI-compatible fine-tuning API (None: ask.base_url; key: ask.api_key).
    remote_base_url: str | None = None
    remote_model: str = "gpt-4o-mini-2024-07-18"
    remote_poll_s: float = Field(default=30.0, gt=0)
    # "sft": train on answers; "dpo" / "orpo": preference tuning on chosen/rejected pairs (sft/prefer.py);
    # "distill": train on a teacher's answers to the training inputs (sft/distill.py, teacher_* below).
    method: Literal["sft", "dpo", "orpo", "distill"] = "sft"
    # dpo/orpo: start from this SFT run folder or adapter folder (DPO's frozen reference); None = the base model.
    init_adapter: str | None = None
    # dpo/orpo pairs: a JSONL/CSV file (prompt/chosen/rejected) ...
    pairs_file: str | None = None
    # ... with its columns renamed: {prompt = "question", chosen = "good", rejected = "bad", id = "row_id"}
    pairs_columns: dict[str, str] = Field(default_factory=dict)
    # ... or built from an eval output folder (or an ask run folder): chosen = reference, rejected = the model's
    # own answer where pairs_metric < pairs_threshold
    pairs_eval: str | None = None
    pairs_eval_run: str | None = None  # which run of the eval folder (default: the last one compared)
    pairs_metric: str = "token_f1"
    pairs_threshold: float = 0.5
    pairs_eval_fraction: float = Field(default=0.1, ge=0, lt=1)  # pairs held out for eval loss / reward margins
    beta: float = Field(default=0.1, gt=0)  # DPO: deviation from the reference; ORPO: weight of the odds ratio
    # method = "distill": the teacher, asked through `ask` (openai: a server; local: a model folder + adapter).
    teacher_backend: Literal["openai", "local"] = "openai"
    teacher_model: str | None = None  # server model name / model folder; None = ask.model / ask.local_model
    teacher_base_url: str | None = None  # openai: None = ask.base_url (key: MEDSCRIBE_ASK__API_KEY)
    teacher_adapter: str | None = None  # local: a PEFT adapter folder of the teacher
    # A curriculum: stages trained one after another in one run ([[sft.stages]], docs/sft.md); [] = one plain run.
    stages: list[SftStageSection] = Field(default_factory=list)

    @field_validator("stages")
    @classmethod
    def _unique_stage_names(cls, stages: list[SftStageSection]) -> list[SftStageSection]:
        names = [s.name for s in stages]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"stage names must be unique ({', '.join(twice)} repeated)")
        return stages


EvalMetric = Literal[
    "exact_match", "token_f1", "bleu", "chrf", "rouge", "meteor", "edit_similarity", "bertscore",
    "embedding_cosine", "organ_cosine",
]


class EvalSection(Section):
    # Metric families to compute; JSON validity, field accuracies and retrieval recall/MRR are always
    # computed when their columns are present (they cost nothing).
    metrics: list[EvalMetric] = Field(
        default_factory=lambda: [
            "exact_match", "token_f1", "bleu", "chrf", "rouge", "meteor", "edit_similarity", "bertscore",
            "embedding_cosine", "organ_cosine",
        ]
    )
    bertscore_model: str = "FacebookAI/xlm-roberta-large"
    bertscore_num_layers: int = Field(default=17, ge=1)
    bertscore_batch_size: int = Field(default=32, ge=1)
    # Sentence-transformers model for embedding cosine and organ matching; None = index.embedding_model.
    embedding_model: str | None = None
    embedding_batch_size: int = Field(default=64, ge=1)
    organ_match_threshold: float = Field(default=0.85, gt=0, le=1)
    device: str = "auto"
    bleu_tokenize: str = "13a"
    group_by: list[str] = Field(default_factory=lambda: ["specialty", "organ", "modality"])
    id_column: str = "id"
    prediction_column: str = "prediction"
    reference_column: str = "reference"
    gold_column: str = "gold_id"
    retrieval_k: list[int] = Field(default_factory=lambda: [1, 3, 5])
    primary_metric: str = "rougeL"
    weakest_n: int = Field(default=3, ge=1)
    min_group_size: int = Field(default=5, ge=1)
    recommend_min_fraction: float = Field(default=0.5, gt=0, le=1)
    bootstrap_samples: int = Field(default=1000, ge=10)
    seed: int = 42
    fail_under: dict[str, float] = Field(default_factory=dict)
    report_formats: list[Literal["html", "md"]] = Field(default_factory=lambda: ["html", "md"])


class ServeSection(Section):
    """`medscribe serve` / `medscribe chat` (medscribe/serve, docs/serve.md)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # local: transformers + PEFT with dynamic batching; vllm: launch `vllm serve` (CUDA) and the RAG front end on it
    engine: Literal["local", "vllm"] = "local"
    # Base model and adapter served; None = ask.local_model / ask.adapter.
    model: str | None = None
    adapter: str | None = None
    # Served model names; base_name None = the model folder's name (or the hub id).
    base_name: str | None = None
    tuned_name: str = "medscribe-tuned"
    rag_name: str = "medscribe-rag"
    # Bearer key for every endpoint but /health; only from the environment (MEDSCRIBE_SERVE__API_KEY); required
    # when host is not a loopback address.
    api_key: SecretStr | None = None
    max_batch: int = Field(default=8, ge=1)
    # How long the first request of a batch waits for others to join it.
    batch_wait_ms: float = Field(default=5.0, ge=0)
    # Requests admitted at once (waiting + generating); more get 503 with Retry-After.
    max_queue: int = Field(default=64, ge=1)
    retry_after_s: int = Field(default=1, ge=0)
    max_request_bytes: int = Field(default=1_000_000, ge=1024)
    max_tokens_cap: int = Field(default=1024, ge=1)
    # max_tokens when a request gives none; None = ask.max_new_tokens.
    default_max_tokens: int | None = Field(default=None, ge=1)
    # Exact-match response cache for temperature 0 (keyed by the request and the model/adapter/index fingerprint).
    cache: bool = True
    cache_size: int = Field(default=1024, ge=0)
    # Retries (sampled) of an answer that violates response_format or, for medscribe-rag, does not parse.
    schema_retries: int = Field(default=2, ge=0)
    # Also log the PHI-scrubbed request and answer text (off: the log has ids, status, latency, tokens only).
    log_text: bool = False
    # --engine vllm: port of the vllm server behind the front end, and extra arguments for `vllm serve`.
    vllm_port: int = Field(default=8001, ge=1, le=65535)
    vllm_args: list[str] = Field(default_factory=list)
    # medscribe chat: recent turns kept within this many characters of history (oldest dropped first).
    chat_history_chars: int = Field(default=6000, ge=0)
    # The eval folder (output of `medscribe eval`) the web page at / compares; None = comparison view off.
    eval_dir: str | None = None
