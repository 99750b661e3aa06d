"""Text in, label out: the one inference path. `predict` labels with it and `evaluate` times it end
to end, so the latency a user gets is the latency that is reported.

Per call (runtime.Classifier, shared with the torch-free runtime): clean the texts as in training,
tokenize with the Rust tokenizer directly, run the model on length-sorted batches (little padding),
turn logits into probabilities and decide with the thresholds tuned on validation. Calling the Rust
tokenizer directly matters for a small model: the transformers __call__ wrapper around it costs about
0.15 ms per text on this machine, about as much as the final model's batch-1 forward pass
(bench/SPEED.md, "Tokenizing one text", has the measured split)."""
from __future__ import annotations

import numpy as np
import torch

from .runtime import Classifier


class TextClassifier(Classifier):
    """A loaded model (any format load_artifact returns), its tokenizer and inference info, as one
    callable: classifier(texts) -> (probabilities, decisions), in input order."""

    def __init__(self, model, tokenizer, info: dict, max_length: int | None = None):
        super().__init__(tokenizer.backend_tokenizer, info, tokenizer.pad_token_id, max_length)
        self.model = model.eval()
        params = list(model.parameters())
        self.device = params[0].device if params else torch.device("cpu")

    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Logits of one padded batch; an ONNX Runtime model is called on the arrays directly."""
        run = getattr(self.model, "run_arrays", None)
        if run is not None:
            return run(input_ids, attention_mask)
        with torch.inference_mode():
            out = self.model(input_ids=torch.from_numpy(input_ids).to(self.device),
                             attention_mask=torch.from_numpy(attention_mask).to(self.device))
        return out.logits.float().cpu().numpy()
