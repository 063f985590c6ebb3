"""Shared pytest fixtures.

The environment is prepared before any test module can import paddle: ``import paddle`` pins
``OMP_NUM_THREADS=1`` unless it is already set, and offline mode keeps PaddleNLP off the network.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from address_completion.runtime import prepare_environment

prepare_environment(offline=True)

import pytest  # noqa: E402  (after prepare_environment on purpose)

# Deadlines of the waits below. Generous on purpose: they only turn a hang into a failure with a message, and a
# loaded 2-core machine may need minutes to import Paddle and load a model (pytest.ini's timeout is the backstop).
START_TIMEOUT = 300  # a subprocess printing its first line (serve: model loaded, port bound)
LINE_TIMEOUT = 300  # any other awaited line or state of a subprocess


# ---------------------------------------------------------------- default model (tiny Qwen2, real tokenizer)


@pytest.fixture(scope="session")
def default_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default model (seed 0, default shape), built once per session; treat it as read-only.

    The tokenizer's BPE files come from the on-disk cache (``$ADDRESS_COMPLETION_CACHE`` or
    ``~/.cache/address_completion``), so only the first session on a machine derives them (~3 s).
    """
    from address_completion.model.default_model import build_default_model

    return build_default_model(tmp_path_factory.mktemp("default-model") / "model")


@pytest.fixture(scope="session")
def qwen_tokenizer(default_model_dir: Path) -> Any:
    """PaddleNLP's AutoTokenizer loaded from the default model: the real Qwen2.5-Instruct tokenizer."""
    from paddlenlp.transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(default_model_dir))


# ---------------------------------------------------------------- LoRA adapter on the default model


@pytest.fixture(scope="session")
def lora_adapter_dir(default_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter (r=4, all linear layers) for the default model, saved as training saves one
    (safetensors, PaddleNLP's unified-checkpoint layout); read-only.

    lora_B starts at zero in a fresh adapter, which would make merging trivial and leave the random
    model's output a single repeated token; seeded non-zero values make the adapter change the
    logits and make greedy outputs vary between prompts. lora_A is drawn from the same seeded generator:
    PaddleNLP draws it from Paddle's global RNG, which would give every session other answers.
    """
    import numpy as np
    from paddlenlp.peft import LoRAConfig, LoRAModel

    from address_completion.model.modeling import load_model, save_adapter

    folder = tmp_path_factory.mktemp("lora-adapter")
    config = LoRAConfig(target_modules=[f".*{name}.*" for name in ("q_proj", "k_proj", "v_proj", "o_proj",
                                                                   "gate_proj", "up_proj", "down_proj")],
                        r=4, lora_alpha=8, lora_dropout=0.0, dtype="float32",
                        base_model_name_or_path=str(default_model_dir))
    lora_model = LoRAModel(load_model(str(default_model_dir)), config)
    rng = np.random.default_rng(0)
    for name, parameter in lora_model.named_parameters():
        if "lora_A" in name:  # kaiming-uniform's scale, as PaddleNLP draws it
            bound = 1.0 / np.sqrt(parameter.shape[0])
            parameter.set_value(rng.uniform(-bound, bound, size=parameter.shape).astype("float32"))
        elif "lora_B" in name:
            parameter.set_value(rng.normal(0.0, 0.5, size=parameter.shape).astype("float32"))
    save_adapter(lora_model, folder)
    return folder


# ---------------------------------------------------------------- a model taught answers that are no address

# Inputs without a gazetteer candidate (a street first), so constrained decoding falls back to free generation,
# and what the taught model answers to them under the grounded prompt: the prompt's no-candidate placeholder, and
# a chain that does not exist (杭州市 is not in 陕西省, and has no 碑林区).
TAUGHT_ANSWERS = {"扬子江南路碑林区1号": "无", "[扬子江南路]碑林区1号": "陕西省杭州市碑林区1号"}
# And under the plain prompt (grounding none, free decoding): a right answer, long enough for the server's
# max_tokens and stop to cut (a random model's free answers are no address, so the answer check abstains them).
TAUGHT_PLAIN_ANSWERS = {"海淀区中关村大街7号": "北京市海淀区中关村大街7号"}


@pytest.fixture(scope="session")
def taught_model_dir(default_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default model trained (plain Adam, full weights, real Paddle) until greedy decoding of the grounded
    prompt of each :data:`TAUGHT_ANSWERS` input (and the plain prompt of each :data:`TAUGHT_PLAIN_ANSWERS` input)
    gives its answer exactly — what a real model that learned the fallback's placeholder did. About 35 steps,
    ~30 s; read-only."""
    import shutil

    import paddle

    from address_completion.data.prompt import decode_answer, encode_example, render_prompt
    from address_completion.inference.generate import encode_prompts, generate_token_ids
    from address_completion.model.modeling import load_model, load_tokenizer

    folder = tmp_path_factory.mktemp("taught-model") / "model"
    shutil.copytree(default_model_dir, folder)
    tokenizer, model = load_tokenizer(str(folder)), load_model(str(folder))
    lessons = [encode_example(tokenizer, address, answer, grounding="candidates")
               for address, answer in TAUGHT_ANSWERS.items()]
    lessons += [encode_example(tokenizer, address, answer) for address, answer in TAUGHT_PLAIN_ANSWERS.items()]
    prompts = encode_prompts(tokenizer, [render_prompt(tokenizer, address, grounding="candidates", candidates=[])
                                         for address in TAUGHT_ANSWERS]
                             + [render_prompt(tokenizer, address) for address in TAUGHT_PLAIN_ANSWERS])
    expected = list(TAUGHT_ANSWERS.values()) + list(TAUGHT_PLAIN_ANSWERS.values())
    paddle.seed(0)
    optimizer = paddle.optimizer.Adam(learning_rate=3e-3, parameters=model.parameters())
    for step in range(1, 301):
        model.train()
        for prompt_ids, answer_ids in lessons:
            logits = model(input_ids=paddle.to_tensor([prompt_ids + answer_ids[:-1]], dtype="int64"),
                           return_dict=True).logits[0, len(prompt_ids) - 1:, :]
            paddle.nn.functional.cross_entropy(logits, paddle.to_tensor(answer_ids, dtype="int64")).backward()
        optimizer.step()
        optimizer.clear_grad()
        if step % 5 == 0:
            model.eval()
            with paddle.no_grad():
                answers = [decode_answer(tokenizer, ids) for ids in generate_token_ids(
                    model, tokenizer, prompts, max_new_tokens=16)]
            if answers == expected:
                model.save_pretrained(str(folder), safe_serialization=True)
                return folder
    raise AssertionError(f"the model did not learn the answers in 300 steps: {answers}")


# ---------------------------------------------------------------- logging: what one test configures ends with it


@pytest.fixture(autouse=True)
def restore_loggers() -> Iterator[None]:
    """cli.main reconfigures the project's logger (own handler, no propagation) and serve's uvicorn logger;
    put both back after every test so no test's outcome depends on which tests ran before it."""
    saved = {name: (logger.handlers[:], logger.level, logger.propagate)
             for name, logger in ((name, logging.getLogger(name)) for name in ("address_completion", "uvicorn"))}
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:], logger.level, logger.propagate = handlers, level, propagate


# ---------------------------------------------------------------- subprocesses: every wait has a deadline


class PipeLines:
    """A subprocess's text pipe read line by line on a daemon thread, so a test waits for a line with a
    deadline instead of blocking in ``readline()`` on a process that may never write."""

    def __init__(self, stream: Any):
        self._queue: queue.Queue[Optional[str]] = queue.Queue()
        self.seen: list[str] = []
        self.ended = False
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: Any) -> None:
        try:
            for line in stream:
                self._queue.put(line)
        finally:
            self._queue.put(None)  # end of file

    def _next(self, deadline: float) -> Optional[str]:
        try:
            line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no line within the deadline; read so far: {''.join(self.seen)[-2000:]!r}") \
                from None
        if line is None:
            self.ended = True
        else:
            self.seen.append(line)
        return line

    def wait_for(self, pattern: str, timeout: float = LINE_TIMEOUT) -> re.Match:
        """The match of the first line (from here on) matching the regex ``pattern``; AssertionError when the
        pipe ends or ``timeout`` seconds pass first."""
        deadline = time.monotonic() + timeout
        while not self.ended:
            line = self._next(deadline)
            found = re.search(pattern, line) if line is not None else None
            if found:
                return found
        raise AssertionError(f"the process ended without printing {pattern!r}; it printed: "
                             f"{''.join(self.seen)[-2000:]!r}")

    def read_to_end(self, timeout: float = LINE_TIMEOUT) -> str:
        """Everything read (from the start) once the pipe ends; AssertionError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self.ended:
            self._next(deadline)
        return "".join(self.seen)


class ServeProcess:
    """``address-completion serve`` in a subprocess, started on a free port (``--port 0``)."""

    def __init__(self, arguments: Sequence[str], env: Optional[dict[str, str]] = None,
                 start_timeout: float = START_TIMEOUT):
        self.process = subprocess.Popen([sys.executable, "-m", "address_completion", "serve", *arguments],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})})
        self.stdout, self.stderr = PipeLines(self.process.stdout), PipeLines(self.process.stderr)
        try:
            self.url = self.stdout.wait_for(r"on (http://127\.0\.0\.1:\d+)", start_timeout).group(1)
        except AssertionError as error:
            self.stop()
            raise AssertionError(f"the server did not start: {error}; stderr: "
                                 f"{''.join(self.stderr.seen)[-2000:]!r}") from None

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self, timeout: float = 60) -> Optional[int]:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        return self.process.returncode


@pytest.fixture()
def start_server() -> Iterator[Callable[..., ServeProcess]]:
    """start_server(*serve_arguments, env=None) -> ServeProcess; every server started is stopped afterwards."""
    started: list[ServeProcess] = []

    def start(*arguments: str, env: Optional[dict[str, str]] = None) -> ServeProcess:
        server = ServeProcess(arguments, env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def wait_until_paused(process: subprocess.Popen, timeout: float = LINE_TIMEOUT) -> None:
    """Wait until ``process`` stops itself with SIGSTOP at the point a test wants to kill it; AssertionError if it
    exits instead or ``timeout`` seconds pass. Unlike polling for files the run writes, this cannot race the run:
    a stopped process stays stopped however late the test looks."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, status = os.waitpid(process.pid, os.WNOHANG | os.WUNTRACED)
        if pid and os.WIFSTOPPED(status):
            return
        if pid:  # it exited: give Popen the status it can no longer collect itself
            process.returncode = os.waitstatus_to_exitcode(status)
            raise AssertionError(f"the process ended (exit code {process.returncode}) before pausing")
        time.sleep(0.1)
    raise AssertionError(f"the process did not pause within {timeout} s")


@pytest.fixture()
def refused_port() -> Iterator[int]:
    """A local port that refuses connections for the whole test: bound (so no other process can take it)
    but never listening. A port closed before use could be taken by another process meanwhile."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]
