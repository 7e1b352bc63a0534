//! Loading a config: read → parse with positions → deserialize → validate.
//!
//! [`ValidatedConfig`] can only be made here, so holding one proves every rule in
//! [`crate::validate`] held; the data plane compiles it without re-checking.

use std::io;
use std::path::Path;
use std::sync::Arc;

use crate::path::{Segment, YamlPath};
use crate::yaml::Node;
use crate::{Config, ConfigError, ConfigErrors, EndpointConfig, EndpointsFile, validate};

/// A [`Config`] that passed every check.
#[derive(Debug, Clone)]
pub struct ValidatedConfig {
    config: Config,
    source_name: String,
    /// The positioned YAML the config was read from (none when built in code): locates what a
    /// later stage (compiling, binding) finds wrong.
    tree: Option<Arc<Node>>,
}

// === impl ValidatedConfig ===

impl PartialEq for ValidatedConfig {
    /// The same settings from the same source; how the YAML was laid out does not count.
    fn eq(&self, other: &Self) -> bool {
        self.config == other.config && self.source_name == other.source_name
    }
}

impl ValidatedConfig {
    /// An error about the value at `path` (`listeners[1].address`), found after validation —
    /// while compiling or binding — in the form of a validation error: the source, the path,
    /// its line when the config came from YAML, the message and the hint.
    pub fn error_at(
        &self,
        path: &str,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> ConfigError {
        let path = YamlPath::parse(path);
        let line = self.tree.as_ref().map(|tree| tree.line_of(&path));
        ConfigError::new(&self.source_name, &path, line, message, hint)
    }

    /// The checked configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Where the configuration came from: the file path, or the name given to [`load_str`] or
    /// [`validate_config`].
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// Takes the checked configuration out.
    pub fn into_config(self) -> Config {
        self.config
    }
}

/// Reads, parses and validates the YAML file at `path`; errors name the file as given.
pub fn load_file(path: &Path) -> Result<ValidatedConfig, ConfigError> {
    load_file_all(path).map_err(ConfigError::from)
}

/// Parses and validates YAML `text`; `file_name` labels errors and becomes the source name.
pub fn load_str(text: &str, file_name: &str) -> Result<ValidatedConfig, ConfigError> {
    load_str_all(text, file_name).map_err(ConfigError::from)
}

/// Like [`load_file`], but reports every semantic problem rather than the first.
pub fn load_file_all(path: &Path) -> Result<ValidatedConfig, ConfigErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| read_error(&file, path, &e))?;
    load_str_all(&text, &file)
}

/// Like [`load_str`], but reports every semantic problem rather than the first.
///
/// A YAML syntax or type error still stops loading at once: nothing after it can be trusted.
pub fn load_str_all(text: &str, file_name: &str) -> Result<ValidatedConfig, ConfigErrors> {
    let tree = Node::parse(text, file_name)?;
    let config = deserialize(&tree, file_name)?;
    finish(config, Some(Arc::new(tree)), file_name)
}

/// Parses and checks an endpoints file (file discovery): YAML or JSON holding
/// `endpoints: [...]` in the form of a cluster's `endpoints`, with the same rules (weights
/// 1–10000, a real port, each address once). Errors name `file_name`, the path and the line.
pub fn load_endpoints_str(text: &str, file_name: &str) -> Result<Vec<EndpointConfig>, ConfigError> {
    let tree = Node::parse(text, file_name)?;
    let file: EndpointsFile = deserialize(&tree, file_name)?;
    match validate::check_endpoints_file(&file.endpoints, Some(&tree), file_name)
        .into_iter()
        .next()
    {
        Some(error) => Err(error),
        None => Ok(file.endpoints),
    }
}

/// Validates a [`Config`] built in code (tests, the admin API); errors have paths but no lines.
pub fn validate_config(config: Config, source_name: &str) -> Result<ValidatedConfig, ConfigErrors> {
    finish(config, None, source_name)
}

fn finish(
    config: Config,
    tree: Option<Arc<Node>>,
    source_name: &str,
) -> Result<ValidatedConfig, ConfigErrors> {
    match ConfigErrors::from_vec(validate::check(&config, tree.as_deref(), source_name)) {
        Some(errors) => Err(errors),
        None => Ok(ValidatedConfig {
            config,
            source_name: source_name.to_owned(),
            tree,
        }),
    }
}

/// Deserializes the schema types, turning serde's path into a YAML path and a line.
fn deserialize<T: serde::de::DeserializeOwned>(tree: &Node, file: &str) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(tree).map_err(|error| {
        let mut segments = Vec::new();
        for segment in error.path().iter() {
            match segment {
                serde_path_to_error::Segment::Seq { index } => {
                    segments.push(Segment::Index(*index));
                }
                serde_path_to_error::Segment::Map { key }
                | serde_path_to_error::Segment::Enum { variant: key } => {
                    segments.push(Segment::Key(key.clone()));
                }
                serde_path_to_error::Segment::Unknown => break,
            }
        }
        let path = YamlPath::from_segments(segments);
        let line = tree.line_of(&path);
        let inner = error.into_inner();
        ConfigError::new(file, &path, Some(line), inner.message, inner.hint)
    })
}

fn read_error(file: &str, path: &Path, error: &io::Error) -> ConfigError {
    let hint = match error.kind() {
        io::ErrorKind::NotFound => {
            let cwd = std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_else(|_| "unknown".to_owned());
            if path.is_relative() {
                format!("check the path; relative paths are resolved from {cwd}")
            } else {
                "check the path".to_owned()
            }
        }
        io::ErrorKind::PermissionDenied => "check the file's permissions".to_owned(),
        io::ErrorKind::InvalidData => "save the file as UTF-8".to_owned(),
        _ => "check that the path names a readable file".to_owned(),
    };
    ConfigError::new(
        file,
        &YamlPath::root(),
        None,
        format!("cannot read the config file: {error}"),
        Some(hint),
    )
}
