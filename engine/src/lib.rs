//! midicopilot's engine: the event language, the model, the decoder loop and its backends.

pub mod cmd;
pub mod events;
pub mod bundle;
pub mod model;
