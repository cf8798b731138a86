//! Model resolution (SPEC §6): which providers and upstream models a requested model means.
//! Pure functions of the config, unit-tested without I/O.

use crate::config::{Config, ProviderKind};
use crate::error::GatewayError;

/// One provider/model pair to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub provider: ProviderKind,
    /// The model name the upstream expects (no provider prefix).
    pub model: String,
}

/// The candidates for a request, in the order to try them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub candidates: Vec<Candidate>,
    /// True for `routing.models` entries: only these may move across providers.
    pub is_virtual: bool,
}

/// Models listed by `/v1/models` when a provider has no `models` override.
pub const OPENAI_MODELS: &[&str] = &[
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "o3",
    "o3-mini",
    "o4-mini",
    "text-embedding-3-small",
    "text-embedding-3-large",
];
pub const GEMINI_MODELS: &[&str] = &[
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
    "gemini-2.0-flash",
    "gemini-3-pro-preview",
    "text-embedding-004",
    "gemini-embedding-001",
];

/// The provider whose naming scheme a bare model name follows.
pub fn provider_by_name(model: &str) -> Option<ProviderKind> {
    if model == "text-embedding-004"
        || model.starts_with("gemini-")
        || model.starts_with("gemma-")
        || model.starts_with("embedding-")
    {
        return Some(ProviderKind::Gemini);
    }
    const OPENAI_PREFIXES: &[&str] = &[
        "gpt-",
        "chatgpt-",
        "o1",
        "o3",
        "o4",
        "text-embedding-",
        "davinci",
        "babbage",
        "omni-moderation",
        "text-moderation",
        "dall-e",
        "whisper",
        "tts-",
        "codex-",
    ];
    OPENAI_PREFIXES
        .iter()
        .any(|p| model.starts_with(p))
        .then_some(ProviderKind::OpenAi)
}

/// Whether `provider` serves `model`: its `models` override when set, else the naming scheme.
fn serves(config: &Config, provider: ProviderKind, model: &str) -> bool {
    match config.provider(provider) {
        None => false,
        Some(p) => match &p.models {
            Some(list) => list.iter().any(|m| m == model),
            None => provider_by_name(model) == Some(provider),
        },
    }
}

/// The longest model name accepted; real ones are well under 100 characters.
pub const MODEL_NAME_MAX: usize = 256;

/// Checks a model name before it can reach an upstream path or body: 1–256 characters of
/// letters, digits and `. _ - : @ +`, not starting with a dot. Gemini puts the model in the
/// URL path (`models/{model}:generateContent`), where a `/`, `?`, `#`, `%` or `..` would
/// change which resource the gateway's key is sent to; OpenAI fine-tune ids use `:` (which
/// Gemini names never do, and which would split Gemini's `model:method` segment).
pub fn check_model_name(model: &str, provider: ProviderKind) -> Result<(), GatewayError> {
    let bad = |why: &str| GatewayError::BadRequest {
        message: format!("Invalid model name: {why}."),
        param: Some("model".into()),
    };
    if model.is_empty() {
        return Err(bad("it is empty"));
    }
    if model.len() > MODEL_NAME_MAX {
        return Err(bad(&format!(
            "it is longer than {MODEL_NAME_MAX} characters"
        )));
    }
    if model.starts_with('.') {
        return Err(bad("it may not start with a dot"));
    }
    let allowed =
        |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'@' | b'+');
    if !model.bytes().all(allowed) {
        return Err(bad(
            "only letters, digits and the characters . _ - : @ + are allowed",
        ));
    }
    if provider == ProviderKind::Gemini && model.contains(':') {
        return Err(bad("Gemini model names cannot contain ':'"));
    }
    Ok(())
}

/// Resolves a requested model. An explicit model never moves to another provider. Every
/// candidate's upstream model name has passed [`check_model_name`].
pub fn resolve(config: &Config, requested: &str) -> Result<Resolution, GatewayError> {
    let resolution = resolve_unchecked(config, requested)?;
    for c in &resolution.candidates {
        check_model_name(&c.model, c.provider)?;
    }
    Ok(resolution)
}

fn resolve_unchecked(config: &Config, requested: &str) -> Result<Resolution, GatewayError> {
    let not_found = || GatewayError::ModelNotFound {
        model: requested.to_string(),
    };
    // A name no provider could be asked for is a 400 naming the field, not a 404 that echoes it.
    if requested.len() > MODEL_NAME_MAX + 16
        || requested
            .bytes()
            .any(|b| b.is_ascii_control() || b == b' ' || b >= 0x80)
    {
        return Err(GatewayError::BadRequest {
            message: "Invalid model name: only letters, digits and the characters . _ - : @ + are allowed.".into(),
            param: Some("model".into()),
        });
    }
    if let Some(list) = config.routing.models.get(requested) {
        let candidates: Vec<Candidate> = list
            .iter()
            .filter_map(|entry| {
                let (prov, model) = entry.split_once('/')?;
                let provider = ProviderKind::from_name(prov)?;
                config.provider(provider)?;
                Some(Candidate {
                    provider,
                    model: model.to_string(),
                })
            })
            .collect();
        if candidates.is_empty() {
            return Err(not_found());
        }
        return Ok(Resolution {
            candidates,
            is_virtual: true,
        });
    }
    if let Some((prov, model)) = requested.split_once('/') {
        if let Some(provider) = ProviderKind::from_name(prov) {
            if config.provider(provider).is_none() {
                return Err(not_found());
            }
            check_model_name(model, provider)?;
            return Ok(Resolution {
                candidates: vec![Candidate {
                    provider,
                    model: model.to_string(),
                }],
                is_virtual: false,
            });
        }
    }
    // Gemini SDKs and some clients write `models/gemini-…`.
    let bare = requested.strip_prefix("models/").unwrap_or(requested);
    for provider in ProviderKind::ALL {
        if serves(config, provider, bare) {
            return Ok(Resolution {
                candidates: vec![Candidate {
                    provider,
                    model: bare.to_string(),
                }],
                is_virtual: false,
            });
        }
    }
    Err(not_found())
}

/// Model ids as clients send them, for `/v1/models`: each enabled provider's catalog, then
/// the virtual models.
pub fn catalog(config: &Config) -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    for provider in ProviderKind::ALL {
        let Some(p) = config.provider(provider) else {
            continue;
        };
        let owner = provider.name();
        match &p.models {
            Some(list) => out.extend(list.iter().map(|m| (m.clone(), owner))),
            None => {
                let builtin = match provider {
                    ProviderKind::OpenAi => OPENAI_MODELS,
                    ProviderKind::Gemini => GEMINI_MODELS,
                };
                out.extend(builtin.iter().map(|m| (m.to_string(), owner)));
            }
        }
    }
    out.extend(
        config
            .routing
            .models
            .keys()
            .map(|k| (k.clone(), "llm-gateway")),
    );
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::config::Overrides;

    fn config(yaml: &str) -> Config {
        Config::load(yaml, &|_| None, &Overrides::default())
            .unwrap()
            .config
    }

    fn first(c: &Config, m: &str) -> (ProviderKind, String) {
        let r = resolve(c, m).unwrap();
        (r.candidates[0].provider, r.candidates[0].model.clone())
    }

    #[test]
    fn bare_names_follow_the_provider_catalogs() {
        let c = config("");
        assert_eq!(
            first(&c, "gpt-4o-mini"),
            (ProviderKind::OpenAi, "gpt-4o-mini".into())
        );
        assert_eq!(first(&c, "o3-mini").0, ProviderKind::OpenAi);
        assert_eq!(first(&c, "text-embedding-3-small").0, ProviderKind::OpenAi);
        assert_eq!(first(&c, "gemini-2.0-flash").0, ProviderKind::Gemini);
        assert_eq!(first(&c, "text-embedding-004").0, ProviderKind::Gemini);
        assert_eq!(
            first(&c, "models/gemini-2.5-pro"),
            (ProviderKind::Gemini, "gemini-2.5-pro".into())
        );
        assert_eq!(
            resolve(&c, "llama-3").unwrap_err(),
            GatewayError::ModelNotFound {
                model: "llama-3".into()
            }
        );
    }

    #[test]
    fn prefixed_names_pin_the_provider() {
        let c = config("");
        assert_eq!(
            first(&c, "openai/my-finetune"),
            (ProviderKind::OpenAi, "my-finetune".into())
        );
        assert_eq!(
            first(&c, "gemini/gemini-2.0-flash"),
            (ProviderKind::Gemini, "gemini-2.0-flash".into())
        );
        let disabled = config("providers:\n  gemini:\n    enabled: false\n");
        assert!(resolve(&disabled, "gemini/gemini-2.0-flash").is_err());
        assert!(
            resolve(&disabled, "gemini-2.0-flash").is_err(),
            "an explicit model never moves provider"
        );
    }

    #[test]
    fn virtual_models_list_their_candidates_in_order() {
        let c = config(
            "routing:\n  models:\n    default: [openai/gpt-4o-mini, gemini/gemini-2.0-flash]\n",
        );
        let r = resolve(&c, "default").unwrap();
        assert!(r.is_virtual);
        assert_eq!(
            r.candidates,
            vec![
                Candidate {
                    provider: ProviderKind::OpenAi,
                    model: "gpt-4o-mini".into()
                },
                Candidate {
                    provider: ProviderKind::Gemini,
                    model: "gemini-2.0-flash".into()
                }
            ]
        );
    }

    #[test]
    fn model_names_that_could_change_an_upstream_path_are_refused() {
        let c = config("");
        for name in [
            "gemini/../../v1beta/cachedContents?",
            "gemini/gemini-2.0-flash?key=evil#",
            "gemini/a/b",
            "gemini/gemini-2.0-flash:evil",
            "gemini/..",
            "gemini/",
            "gpt-4o mini",
            "gpt-4o%2Fx",
            "gpt-4o\nx",
            &"g".repeat(300),
        ] {
            let err = resolve(&c, name).unwrap_err();
            assert!(
                matches!(&err, GatewayError::BadRequest { param: Some(p), .. } if p == "model"),
                "{name:?} must be a 400 naming `model`, got {err:?}"
            );
        }
        assert!(
            resolve(&c, "openai/ft:gpt-4o-mini:org::id").is_ok(),
            "fine-tune ids keep their colons"
        );
        assert!(resolve(&c, "gemini/gemini-2.5-flash-lite").is_ok());
        assert!(resolve(&c, "gpt-4.1-mini").is_ok());
    }

    #[test]
    fn a_models_override_replaces_the_catalog() {
        let c = config("providers:\n  openai:\n    models: [my-model]\n");
        assert_eq!(first(&c, "my-model").0, ProviderKind::OpenAi);
        assert!(resolve(&c, "gpt-4o").is_err());
        let ids: Vec<String> = catalog(&c).into_iter().map(|(id, _)| id).collect();
        assert!(
            ids.contains(&"my-model".to_string()) && ids.contains(&"gemini-2.0-flash".to_string())
        );
    }
}
