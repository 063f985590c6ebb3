"""Models: loading (Paddle, Hugging Face, GGUF), the offline default model and the Qwen2.5 tokenizer."""
