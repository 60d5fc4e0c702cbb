"""midicopilot host: presets, JACK patching, launching the engine, training commands."""
