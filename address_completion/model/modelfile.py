"""An Ollama Modelfile for an exported GGUF file, with the prompt the model was trained on.

Ollama does not run the Jinja chat template stored in a GGUF file; its Modelfile carries a Go template
instead. Rather than hand-writing ChatML (and forgetting the default system message Qwen2.5's and
SmolLM2's templates insert when none is given), the template is derived from the tokenizer's own chat
template: it is rendered once around a placeholder user message, and the text on either side of the
placeholder becomes the Modelfile's TEMPLATE around ``{{ .Prompt }}``. A request with one user message
therefore reaches the model as exactly the text :func:`prompt.render_prompt` builds in training.
"""

from __future__ import annotations

from typing import Any

PLACEHOLDER = "\x00ADDRESS\x00"  # a user message no tokenizer template contains by itself
PROMPT_VARIABLE = "{{ .Prompt }}"


def prompt_around_message(tokenizer: Any) -> tuple[str, str]:
    """(text before, text after) the user message in the model's prompt, generation prompt included.

    Raises ValueError when the tokenizer has no chat template (the plain prompt needs no Modelfile
    template) or the template does not show the message verbatim exactly once.
    """
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("the tokenizer has no chat template; Ollama's default template would not match training")
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": PLACEHOLDER}], tokenize=False,
                                             add_generation_prompt=True)
    if rendered.count(PLACEHOLDER) != 1:
        raise ValueError("the chat template does not show the user message verbatim once; write the Modelfile "
                         "TEMPLATE by hand")
    before, after = rendered.split(PLACEHOLDER)
    return before, after


def ollama_modelfile(tokenizer: Any, gguf_file: str, *, num_ctx: int = 2048) -> str:
    """Modelfile text for ``ollama create NAME -f Modelfile``: FROM ``gguf_file`` (a path relative to the
    Modelfile, or absolute), the training prompt as TEMPLATE, the EOS token as stop word, greedy decoding.

    Raises ValueError as :func:`prompt_around_message` does, or when the prompt text contains Go template
    delimiters or triple quotes, which the Modelfile cannot carry verbatim.
    """
    before, after = prompt_around_message(tokenizer)
    for text in (before, after):
        if "{{" in text or "}}" in text or '"""' in text:
            raise ValueError("the chat template's text contains '{{', '}}' or '\"\"\"'; write the Modelfile by hand")
    stop = tokenizer.eos_token
    if not stop:
        raise ValueError("the tokenizer defines no eos_token; the Modelfile needs it as its stop word")
    return (f"FROM {gguf_file}\n"
            f'TEMPLATE """{before}{PROMPT_VARIABLE}{after}"""\n'
            f'PARAMETER stop "{stop}"\n'
            "PARAMETER temperature 0\n"
            f"PARAMETER num_ctx {int(num_ctx)}\n")
