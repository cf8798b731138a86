//! OpenAI-side wire types shared by the translations into and out of other providers, and
//! the conversions for clients of other APIs on OpenAI models (`from_gemini`).

pub mod from_gemini;
pub(crate) mod responses_wire;
pub(crate) mod wire;
