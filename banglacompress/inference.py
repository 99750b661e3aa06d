"""Text in, label out: the one inference path. `predict` labels with it and `evaluate` times it end
to end, so the latency a user gets is the latency that is reported.

Per call: clean the texts as in training, tokenize with the Rust tokenizer directly, run the model
on length-sorted batches (little padding), turn logits into probabilities and decide with the
thresholds tuned on validation. Calling the Rust tokenizer directly matters for a small model: the
transformers __call__ wrapper around it costs about 0.15 ms per text on this machine, about as much
as the final model's batch-1 forward pass (bench/SPEED.md, "Tokenizing one text", has the measured split)."""
from __future__ import annotations

import copy

import numpy as np
import torch

from .data import clean_text
from .scoring import decide, probabilities
from .train import progress


class TextClassifier:
    """A loaded model (any format load_artifact returns), its tokenizer and inference info, as one
    callable: classifier(texts) -> (probabilities, decisions), in input order."""

    def __init__(self, model, tokenizer, info: dict, max_length: int | None = None):
        self.model, self.info = model.eval(), info
        self.max_length = max_length or info.get("max_length", 128)
        # An own copy: truncation / padding settings are state of the Rust tokenizer object.
        self.backend = copy.deepcopy(tokenizer.backend_tokenizer)
        self.backend.enable_truncation(self.max_length)
        self.backend.no_padding()
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        params = list(model.parameters())
        self.device = params[0].device if params else torch.device("cpu")

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids per text, cleaned as in training (non-strings, e.g. NaN cells, as empty text);
        the same ids as tokenizer(texts, truncation=True, max_length=max_length)."""
        cleaned = [clean_text(t) if isinstance(t, str) else "" for t in texts]
        if len(cleaned) < 8:  # encode_batch hands work to a thread pool: 3x slower for one text (measured)
            return [self.backend.encode(t).ids for t in cleaned]
        return [e.ids for e in self.backend.encode_batch(cleaned)]

    def pad(self, ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Right-padded (input_ids, attention_mask) int64 arrays, as long as the longest row."""
        if len(ids) == 1:  # the batch-1 path: no padding to do
            arr = np.asarray(ids, dtype=np.int64)
            return arr, np.ones_like(arr)
        longest = max(len(row) for row in ids)
        arr = np.full((len(ids), longest), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), longest), dtype=np.int64)
        for r, row in enumerate(ids):
            arr[r, : len(row)] = row
            mask[r, : len(row)] = 1
        return arr, mask

    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Logits of one padded batch; an ONNX Runtime model is called on the arrays directly."""
        run = getattr(self.model, "run_arrays", None)
        if run is not None:
            return run(input_ids, attention_mask)
        with torch.inference_mode():
            out = self.model(input_ids=torch.from_numpy(input_ids).to(self.device),
                             attention_mask=torch.from_numpy(attention_mask).to(self.device))
        return out.logits.float().cpu().numpy()

    def logits(self, texts: list[str], batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        ids = self.encode(texts)
        if len(ids) <= 1:  # one text (or none): no batching, sorting or reordering to do
            return (self.forward(*self.pad(ids)) if ids
                    else np.zeros((0, len(self.info["label_names"])), dtype=np.float32))
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths share a batch
        out = None
        starts = range(0, len(order), batch_size)
        for start in (progress(starts, desc="predict") if show_progress else starts):
            rows = order[start: start + batch_size]
            logits = self.forward(*self.pad([ids[i] for i in rows]))
            if out is None:
                out = np.empty((len(ids), logits.shape[1]), dtype=np.float32)
            out[rows] = logits
        return out

    def __call__(self, texts: list[str], batch_size: int = 64, show_progress: bool = False):
        """-> (probabilities, decisions) per text; decisions use the thresholds tuned on val."""
        task = self.info["task"]
        probs = probabilities(task, self.logits(texts, batch_size, show_progress))
        return probs, decide(task, probs, self.info.get("thresholds"))
