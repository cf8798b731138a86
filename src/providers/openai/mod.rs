//! OpenAI-side wire types shared by the translations into and out of other providers.

pub(crate) mod responses_wire;
pub(crate) mod wire;
