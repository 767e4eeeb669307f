//! `idp.emulate = true`: the emulator started in-process, with the gateway's
//! own API key, and `idp.base_url` pointed at it. Development only.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use super::ciam::{self, CiamEmulator};
use super::enos::{self, EnosEmulator};
use super::sso_identity::{self, SsoIdentityEmulator};
use super::{default_users, run, Emulator, EmulatorConfig, BASE_PATH};
use crate::config::{Config, ProviderConfig, SessionConfig};

/// Default lifetime of sessions the embedded emulator creates, in seconds.
pub const EMBEDDED_SESSION_SECS: u64 = 900;

/// An embedded emulator started for `idp.emulate = true`.
pub struct EmbeddedIdp {
    /// Where it listens (loopback, ephemeral port).
    pub addr: SocketAddr,
    /// Its state, to create sessions from the demo.
    pub emulator: Emulated,
}

/// Which emulator runs, by `idp.provider`.
#[derive(Debug)]
pub enum Emulated {
    /// The IID child-session emulator.
    Iid(Arc<Emulator>),
    /// The EnOS IAM emulator.
    Enos(Arc<EnosEmulator>),
    /// The SSO identity sessions emulator.
    SsoIdentity(Arc<SsoIdentityEmulator>),
    /// The CIAM emulator.
    Ciam(Arc<CiamEmulator>),
}

impl Emulated {
    /// Signs `profile_id` in and returns the `Cookie` header value that
    /// carries the new session the way `session` reads it, or `None` for a
    /// user the emulator does not know. For the demo and quick trials.
    pub fn sign_in_cookie(&self, session: &SessionConfig, profile_id: &str) -> Option<String> {
        match self {
            Emulated::Iid(emulator) => {
                let created = emulator.create_session(profile_id, None)?;
                let mut cookie = format!("{}={}", session.id_cookie, created.session_id);
                if !session.token_cookie.is_empty() {
                    cookie.push_str(&format!(
                        "; {}={}",
                        session.token_cookie, created.session_token
                    ));
                }
                Some(cookie)
            }
            Emulated::Enos(enos) => {
                let created = enos.create_session(profile_id, None)?;
                Some(format!("{}={}", session.id_cookie, created.token))
            }
            Emulated::SsoIdentity(sso) => {
                let created = sso.create_session(profile_id, None)?;
                Some(format!("{}={}", session.id_cookie, created.token))
            }
            Emulated::Ciam(ciam) => {
                let created = ciam.create_session(profile_id, None)?;
                Some(format!("{}={}", session.id_cookie, created.token))
            }
        }
    }
}

/// Runs an emulator's `serve` future for the life of the process; it only
/// ends on an I/O error, which is logged.
fn serve_in_background(
    name: &'static str,
    serve: impl std::future::Future<Output = std::io::Result<()>> + Send + 'static,
) {
    tokio::spawn(async move {
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "embedded {name} emulator stopped");
        }
    });
}

/// The loud reminder that no real IdP checks sessions, with how to make one
/// (the EnOS, SSO identity and CIAM emulators take a string profile id).
fn warn_emulated(name: &str, addr: SocketAddr) {
    tracing::warn!(
        emulator = %addr,
        "idp.emulate = true: sessions are checked by the built-in {name} emulator, not a real IdP; never use this in production. \
         Create a session with: curl -s -X POST http://{addr}/__emulator/sessions -d '{{\"profileId\": \"518\"}}'"
    );
}

/// Starts the in-process emulator when the config asks for it and points
/// `cfg.idp.base_url` at it.
pub async fn start(cfg: &mut Config) -> std::io::Result<Option<EmbeddedIdp>> {
    if !cfg.idp.emulate {
        return Ok(None);
    }
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let iid = match &mut cfg.idp.provider {
        ProviderConfig::Iid(iid) => iid,
        ProviderConfig::Ciam(own) => {
            // It checks the access token the client will send, and serves
            // userinfo so the session has a profile id.
            let emulator = CiamEmulator::new(
                default_users(),
                EMBEDDED_SESSION_SECS,
                own.access_token.expose(),
            );
            serve_in_background(
                "CIAM",
                ciam::run(listener, Arc::clone(&emulator), std::future::pending()),
            );
            cfg.idp.base_url = format!("http://{addr}");
            own.userinfo_url = Some(format!(
                "http://{addr}{}",
                crate::idp::ciam::wire::PATH_USERINFO
            ));
            warn_emulated("CIAM", addr);
            return Ok(Some(EmbeddedIdp {
                addr,
                emulator: Emulated::Ciam(emulator),
            }));
        }
        ProviderConfig::Enos(_) => {
            let enos = EnosEmulator::new(default_users(), EMBEDDED_SESSION_SECS);
            serve_in_background(
                "EnOS",
                enos::run(listener, Arc::clone(&enos), std::future::pending()),
            );
            cfg.idp.base_url = format!("http://{addr}{}", crate::idp::enos::wire::SERVICE_PATH);
            warn_emulated("EnOS", addr);
            return Ok(Some(EmbeddedIdp {
                addr,
                emulator: Emulated::Enos(enos),
            }));
        }
        ProviderConfig::SsoIdentity(_) => {
            let sso = SsoIdentityEmulator::new(default_users(), EMBEDDED_SESSION_SECS);
            serve_in_background(
                "SSO identity",
                sso_identity::run(listener, Arc::clone(&sso), std::future::pending()),
            );
            cfg.idp.base_url = format!("http://{addr}");
            warn_emulated("SSO identity", addr);
            return Ok(Some(EmbeddedIdp {
                addr,
                emulator: Emulated::SsoIdentity(sso),
            }));
        }
    };
    // The emulator speaks IID; it checks the key the client will send.
    let emulator = Emulator::new(EmulatorConfig {
        api_key: iid.api_key.expose().to_owned(),
        client_id: None,
        expires_in: EMBEDDED_SESSION_SECS,
        users: default_users(),
    });
    let state = Arc::clone(&emulator);
    tokio::spawn(async move {
        if let Err(e) = run(listener, state, std::future::pending()).await {
            tracing::error!(error = %e, "embedded emulator stopped");
        }
    });
    cfg.idp.base_url = format!("http://{addr}{BASE_PATH}");
    tracing::warn!(
        emulator = %addr,
        "idp.emulate = true: sessions are checked by the built-in IID emulator, not a real IdP; never use this in production. \
         Create a session with: curl -s -X POST http://{addr}/__emulator/sessions -d '{{\"profileId\": 518}}'"
    );
    Ok(Some(EmbeddedIdp {
        addr,
        emulator: Emulated::Iid(emulator),
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::auth::credential::Credential;
    use crate::idp::{build, ClientInfo, Verdict};

    #[tokio::test]
    async fn emulate_with_ciam_serves_the_exchange_and_userinfo() {
        let mut cfg = Config::from_toml_str(
            "[idp]\nprovider = \"ciam\"\nemulate = true\naccess_token = \"at\"\n\
             roles_pointer = \"/roles\"\n\
             [[routes]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:3000\"\n",
        )
        .unwrap();
        let embedded = start(&mut cfg).await.unwrap().unwrap();
        let Emulated::Ciam(ciam) = &embedded.emulator else {
            panic!("not the CIAM emulator")
        };
        let token = ciam.create_session("518", None).unwrap().token;
        let client = build(&cfg.idp).unwrap();
        let local = ClientInfo {
            ip: std::net::Ipv4Addr::LOCALHOST.into(),
            user_agent: None,
        };
        let verdict = client
            .fetch(&Credential::new(&token, ""), &local)
            .await
            .unwrap();
        let Verdict::Valid { identity, .. } = verdict else {
            panic!("not valid: {verdict:?}")
        };
        assert_eq!(identity.subject, "518");
        assert_eq!(identity.roles, ["IID-INVESTOR"]);
        let stats = ciam.stats();
        assert_eq!((stats.exchange, stats.userinfo), (1, 1));
        assert_eq!(stats.rejected_access_token, 0);
    }

    #[tokio::test]
    async fn emulate_with_enos_starts_the_enos_emulator_and_points_the_client_at_it() {
        let mut cfg = Config::from_toml_str(
            "[idp]\nprovider = \"enos\"\nemulate = true\n\
             [[routes]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:3000\"\n",
        )
        .unwrap();
        let embedded = start(&mut cfg).await.unwrap().unwrap();
        let Emulated::Enos(enos) = &embedded.emulator else {
            panic!("not the EnOS emulator")
        };
        assert_eq!(
            cfg.idp.base_url,
            format!("http://{}/enos-iam-service", embedded.addr)
        );
        let token = enos.create_session("518", None).unwrap().token;
        let client = build(&cfg.idp).unwrap();
        let local = ClientInfo {
            ip: std::net::Ipv4Addr::LOCALHOST.into(),
            user_agent: None,
        };
        let verdict = client
            .fetch(&Credential::new(&token, ""), &local)
            .await
            .unwrap();
        let Verdict::Valid { identity, .. } = verdict else {
            panic!("not valid: {verdict:?}")
        };
        assert_eq!(identity.subject, "u518");
        assert_eq!(enos.stats().fetch, 1);
    }

    #[tokio::test]
    async fn emulate_with_sso_identity_starts_its_emulator_and_points_the_client_at_it() {
        let mut cfg = Config::from_toml_str(
            "[idp]\nprovider = \"sso_identity\"\nemulate = true\n\
             [[routes]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:3000\"\n",
        )
        .unwrap();
        let embedded = start(&mut cfg).await.unwrap().unwrap();
        let Emulated::SsoIdentity(sso) = &embedded.emulator else {
            panic!("not the SSO identity emulator")
        };
        assert_eq!(cfg.idp.base_url, format!("http://{}", embedded.addr));
        let cookie = embedded
            .emulator
            .sign_in_cookie(&cfg.session, "518")
            .unwrap();
        let token = cookie.strip_prefix("iid_session_id=").unwrap();
        let client = build(&cfg.idp).unwrap();
        let local = ClientInfo {
            ip: std::net::Ipv4Addr::LOCALHOST.into(),
            user_agent: None,
        };
        let verdict = client
            .fetch(&Credential::new(token, ""), &local)
            .await
            .unwrap();
        let Verdict::Valid { identity, .. } = verdict else {
            panic!("not valid: {verdict:?}")
        };
        assert_eq!(identity.subject, "u518");
        assert_eq!(sso.stats().fetch, 1);
    }
}
