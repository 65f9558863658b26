//! Where the CLI finds its host and token: `GROVE_HOST` / `GROVE_TOKEN`, else
//! the file `grove login` writes (`$XDG_CONFIG_HOME/grove/config.toml`, by
//! default `~/.config/grove/config.toml`, mode 0600).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

/// The host to talk to and the token to present there.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Settings {
    pub host: Option<String>,
    /// Never printed: `Debug` shows it redacted; only [`Settings::save`]
    /// writes it out, to an owner-only file.
    #[serde(default, serialize_with = "reveal", skip_serializing_if = "Option::is_none")]
    pub token: Option<SecretString>,
}

fn reveal<S: Serializer>(token: &Option<SecretString>, serializer: S) -> Result<S::Ok, S::Error> {
    match token {
        Some(token) => serializer.serialize_str(token.expose_secret()),
        None => serializer.serialize_none(),
    }
}

impl Settings {
    /// Where `grove login` saves them.
    pub fn path() -> anyhow::Result<PathBuf> {
        let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|dir| !dir.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => PathBuf::from(std::env::var_os("HOME").context("neither XDG_CONFIG_HOME nor HOME is set")?)
                .join(".config"),
        };
        Ok(base.join("grove").join("config.toml"))
    }

    /// The saved settings, overridden by the environment.
    pub fn load() -> anyhow::Result<Self> {
        let path = Self::path()?;
        let mut settings = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Self::default(),
            Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
        };
        if let Some(host) = std::env::var("GROVE_HOST").ok().filter(|host| !host.is_empty()) {
            // The saved token belongs to the saved host; never send it elsewhere.
            if settings.host.as_deref() != Some(host.as_str()) {
                settings.token = None;
            }
            settings.host = Some(host);
        }
        if let Some(token) = std::env::var("GROVE_TOKEN").ok().filter(|token| !token.is_empty()) {
            settings.token = Some(SecretString::from(token));
        }
        Ok(settings)
    }

    /// Host and token, or an error that says how to provide them.
    pub fn require(&self) -> anyhow::Result<(&str, &SecretString)> {
        match (&self.host, &self.token) {
            (Some(host), Some(token)) => Ok((host, token)),
            _ => bail!("no host or token: run `grove login --host URL` or set GROVE_HOST and GROVE_TOKEN"),
        }
    }

    /// Writes the file readable by its owner only; the token is a secret.
    pub fn save(&self) -> anyhow::Result<PathBuf> {
        let path = Self::path()?;
        let dir = path.parent().expect("the path has a directory");
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let text = toml::to_string(self).expect("settings serialize");
        let temporary = path.with_extension("toml.tmp");
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .with_context(|| format!("writing {}", temporary.display()))?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}
