//! What a sign-in in flight must remember between the redirect to the
//! provider and its callback (the PKCE verifier, the nonce, where to return),
//! kept in the browser in a cookie signed with a key every proxy on the
//! store shares. Nothing is stored for a sign-in that never finishes, so a
//! flood of login starts costs no memory or storage.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use grove_core::keys;
use grove_objects::store::{ObjectStore, StoreError};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::sync::OnceCell;

/// A sign-in must come back within this long.
pub const LOGIN_TTL_SECS: u64 = 600;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoginState {
    pub pkce_verifier: String,
    pub nonce: String,
    /// The site path to go back to.
    pub return_to: String,
    /// The host the sign-in started on; the callback must arrive there.
    pub host: String,
    pub expires_ms: u64,
}

/// Signs and checks login-state cookies.
pub struct LoginStates {
    store: Arc<dyn ObjectStore>,
    key: OnceCell<[u8; 32]>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoginStateError {
    #[error("reading the signing key failed: {0}")]
    Store(#[from] StoreError),
    #[error("the stored signing key auth/keys/login-state is not 32 bytes")]
    DamagedKey,
    #[error("the sign-in state is damaged or was not made here")]
    Forged,
    #[error("the sign-in took longer than {LOGIN_TTL_SECS} s; start again")]
    Expired,
}

impl LoginStates {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            key: OnceCell::new(),
        }
    }

    /// The store's signing key, made by the first proxy that needs it.
    async fn key(&self) -> Result<&[u8; 32], LoginStateError> {
        self.key
            .get_or_try_init(|| async {
                let key_name = keys::login_state_key();
                let mut fresh = [0u8; 32];
                rand::rng().fill_bytes(&mut fresh);
                match self
                    .store
                    .put_if_absent(&key_name, Bytes::copy_from_slice(&fresh))
                    .await
                {
                    Ok(_) => return Ok(fresh),
                    Err(error) if error.is_precondition_failed() => {}
                    Err(error) => return Err(error.into()),
                }
                let stored = self.store.get(&key_name).await?;
                <[u8; 32]>::try_from(stored.bytes.as_ref()).map_err(|_| LoginStateError::DamagedKey)
            })
            .await
    }

    fn mac(key: &[u8; 32], state: &str, payload: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(state.as_bytes());
        mac.update(b".");
        mac.update(payload.as_bytes());
        mac
    }

    /// The cookie value for sign-in `state`.
    pub async fn seal(&self, state: &str, login: &LoginState) -> Result<String, LoginStateError> {
        let key = self.key().await?;
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(login).expect("login state serializes"));
        let tag = Self::mac(key, state, &payload).finalize().into_bytes();
        Ok(format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag)))
    }

    /// The sign-in a cookie holds, if this store's key signed it for
    /// `state` and it has not expired.
    pub async fn open(&self, state: &str, cookie: &str, now_ms: u64) -> Result<LoginState, LoginStateError> {
        let key = self.key().await?;
        let (payload, tag) = cookie.split_once('.').ok_or(LoginStateError::Forged)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| LoginStateError::Forged)?;
        Self::mac(key, state, payload)
            .verify_slice(&tag)
            .map_err(|_| LoginStateError::Forged)?;
        let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|_| LoginStateError::Forged)?;
        let login: LoginState = serde_json::from_slice(&bytes).map_err(|_| LoginStateError::Forged)?;
        if now_ms >= login.expires_ms {
            return Err(LoginStateError::Expired);
        }
        Ok(login)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use grove_objects::store::MemoryStore;

    fn login(expires_ms: u64) -> LoginState {
        LoginState {
            pkce_verifier: "v".into(),
            nonce: "n".into(),
            return_to: "/members/".into(),
            host: "demo.localhost".into(),
            expires_ms,
        }
    }

    #[tokio::test]
    async fn a_sealed_state_opens_only_for_its_own_state_key_and_time() {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let states = LoginStates::new(Arc::clone(&store));
        let sealed = states.seal("s1", &login(1000)).await.unwrap();
        assert_eq!(states.open("s1", &sealed, 999).await.unwrap(), login(1000));
        assert!(matches!(
            states.open("s2", &sealed, 0).await,
            Err(LoginStateError::Forged)
        ));
        assert!(matches!(
            states.open("s1", &sealed, 1000).await,
            Err(LoginStateError::Expired)
        ));
        let (payload, tag) = sealed.split_once('.').unwrap();
        let tampered = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(br#"{"pkce_verifier":"x"}"#));
        assert!(matches!(
            states.open("s1", &tampered, 0).await,
            Err(LoginStateError::Forged)
        ));
        assert!(matches!(
            states.open("s1", payload, 0).await,
            Err(LoginStateError::Forged)
        ));
        // A second proxy on the same store shares the key.
        let other = LoginStates::new(store);
        assert_eq!(other.open("s1", &sealed, 0).await.unwrap(), login(1000));
    }
}
