"""midicopilot training: MIDI files to event text, tokenizer, OLMo2 + LoRA, bundle export."""
