"""address_completion: LoRA fine-tuning of a small LLM to complete Chinese postal addresses.

Modules never import paddle / paddlenlp at import time: every entry point first calls
``address_completion.runtime.prepare_environment`` (threads, offline flags), then imports Paddle.

The package is grouped by concern (``data``, ``model``, ``training``, ``inference``, ``evaluation``).
"""

__version__ = "0.1.0"

DEFAULT_PROMPT_PREFIX = "补齐五级行政地址: "
