//! midicopilot's engine: the event language, the model, the decoder loop and its backends
//! (docs/ENGINE.md, docs/LIVE.md).

pub mod backend;
pub mod bundle;
pub mod cmd;
pub mod decode;
pub mod events;
pub mod live;
pub mod model;
pub mod session;
pub mod tempo;
