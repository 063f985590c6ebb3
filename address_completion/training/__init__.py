"""Training: the run_finetune-style config, LoRA / full SFT, and merging an adapter into its base."""
