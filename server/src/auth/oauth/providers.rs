//! Built-in identity providers: where they live and how their profiles map
//! to a user.
//!
//! OpenID Connect providers (Google, Microsoft, LinkedIn, Apple, and any issuer
//! configured as `oidc`) are found by discovery and verified with
//! `openidconnect`. The OAuth 2-only providers (GitHub, Discord, Facebook, X)
//! are described here: their documented authorize / token / user endpoints
//! and the shape of their user objects.

use serde_json::{Value, json};

/// How a provider is spoken to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// OpenID Connect by discovery from `issuer`.
    Oidc {
        /// Issuer URL.
        issuer: String,
    },
    /// Plain OAuth 2 with a profile endpoint.
    OAuth2(OAuth2Endpoints),
}

/// The endpoints and conventions of an OAuth 2-only provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth2Endpoints {
    /// Authorization endpoint.
    pub authorize_url: String,
    /// Token endpoint.
    pub token_url: String,
    /// Profile endpoint (bearer token).
    pub userinfo_url: String,
    /// Scopes asked for by default.
    pub default_scopes: &'static str,
    /// Whether the provider takes PKCE (sent whenever it does).
    pub pkce: bool,
    /// Client authentication at the token endpoint: HTTP Basic (else form fields).
    pub basic_auth: bool,
}

/// The built-in kinds, and `oidc`.
pub const KINDS: &[&str] = &[
    "oidc",
    "google",
    "azure",
    "linkedin_oidc",
    "apple",
    "github",
    "discord",
    "facebook",
    "x",
];

/// Resolves a configured provider to how it is spoken to. `issuer` is
/// required for `oidc`, and is the tenant (or full issuer) for `azure`.
pub fn resolve(kind: &str, issuer: Option<&str>) -> Result<Kind, String> {
    let oauth2 = |authorize: &str, token: &str, user: &str, scopes, pkce, basic| {
        Ok(Kind::OAuth2(OAuth2Endpoints {
            authorize_url: authorize.into(),
            token_url: token.into(),
            userinfo_url: user.into(),
            default_scopes: scopes,
            pkce,
            basic_auth: basic,
        }))
    };
    match kind {
        "oidc" => match issuer {
            Some(i) if url::Url::parse(i).is_ok() => Ok(Kind::Oidc { issuer: i.into() }),
            _ => Err("an oidc provider needs an issuer URL".into()),
        },
        "google" => Ok(Kind::Oidc {
            issuer: "https://accounts.google.com".into(),
        }),
        "azure" => {
            // Tenant-aware: a tenant id or domain, or a full issuer URL.
            let tenant = issuer.unwrap_or("common");
            let issuer = if tenant.starts_with("https://") {
                tenant.to_owned()
            } else {
                format!("https://login.microsoftonline.com/{tenant}/v2.0")
            };
            Ok(Kind::Oidc { issuer })
        }
        "linkedin_oidc" => Ok(Kind::Oidc {
            issuer: "https://www.linkedin.com/oauth".into(),
        }),
        "github" => oauth2(
            "https://github.com/login/oauth/authorize",
            "https://github.com/login/oauth/access_token",
            "https://api.github.com/user",
            "read:user user:email",
            true,
            false,
        ),
        "discord" => oauth2(
            "https://discord.com/oauth2/authorize",
            "https://discord.com/api/oauth2/token",
            "https://discord.com/api/users/@me",
            "identify email",
            true,
            false,
        ),
        "facebook" => oauth2(
            "https://www.facebook.com/v19.0/dialog/oauth",
            "https://graph.facebook.com/v19.0/oauth/access_token",
            "https://graph.facebook.com/me?fields=id,name,email,picture",
            "email public_profile",
            true,
            false,
        ),
        "x" => oauth2(
            "https://x.com/i/oauth2/authorize",
            "https://api.x.com/2/oauth2/token",
            "https://api.x.com/2/users/me?user.fields=profile_image_url,name,username",
            "users.read tweet.read offline.access",
            true,
            true,
        ),
        // The client secret is a JWT made from the app's .p8 key (see
        // `apple_client_secret`); the callback is a form_post.
        "apple" => Ok(Kind::Oidc {
            issuer: "https://appleid.apple.com".into(),
        }),
        other => Err(format!(
            "unknown provider kind {other:?}; use one of {}",
            KINDS.join(", ")
        )),
    }
}

/// Who signed in, as the provider describes them.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// The provider's stable user id (`sub`).
    pub provider_id: String,
    /// Email, when the provider shares one.
    pub email: Option<String>,
    /// Whether the provider vouches for the email.
    pub email_verified: bool,
    /// Display name.
    pub name: Option<String>,
    /// Avatar URL.
    pub avatar_url: Option<String>,
}

impl Profile {
    /// GoTrue's `identity_data` (also the user's first `user_metadata`).
    pub fn identity_data(&self, provider: &str, issuer: Option<&str>) -> Value {
        json!({
            "sub": self.provider_id,
            "provider_id": self.provider_id,
            "email": self.email,
            "email_verified": self.email_verified,
            "phone_verified": false,
            "name": self.name,
            "full_name": self.name,
            "avatar_url": self.avatar_url,
            "picture": self.avatar_url,
            "iss": issuer,
            "provider": provider,
        })
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Maps an OAuth 2 provider's user object. GitHub's email may be private:
/// `emails` is the list from `GET /user/emails` when fetched.
pub fn map_profile(kind: &str, user: &Value, emails: Option<&Value>) -> Option<Profile> {
    match kind {
        // https://docs.github.com/en/rest/users/users#get-the-authenticated-user
        "github" => {
            let primary = emails.and_then(Value::as_array).and_then(|list| {
                list.iter()
                    .find(|e| e["primary"] == true && e["verified"] == true)
                    .or_else(|| list.iter().find(|e| e["verified"] == true))
            });
            let (email, verified) = match primary {
                Some(e) => (text(&e["email"]), true),
                None => (text(&user["email"]), false),
            };
            Some(Profile {
                provider_id: text(&user["id"])?,
                email,
                email_verified: verified,
                name: text(&user["name"]).or_else(|| text(&user["login"])),
                avatar_url: text(&user["avatar_url"]),
            })
        }
        // https://discord.com/developers/docs/resources/user#user-object
        "discord" => {
            let id = text(&user["id"])?;
            let avatar = text(&user["avatar"])
                .map(|a| format!("https://cdn.discordapp.com/avatars/{id}/{a}.png"));
            Some(Profile {
                email: text(&user["email"]),
                email_verified: user["verified"] == true,
                name: text(&user["global_name"]).or_else(|| text(&user["username"])),
                avatar_url: avatar,
                provider_id: id,
            })
        }
        // https://developers.facebook.com/docs/graph-api/reference/user
        "facebook" => Some(Profile {
            provider_id: text(&user["id"])?,
            // Facebook only returns confirmed emails.
            email_verified: text(&user["email"]).is_some(),
            email: text(&user["email"]),
            name: text(&user["name"]),
            avatar_url: text(&user["picture"]["data"]["url"]),
        }),
        // https://docs.x.com/x-api/users/user-lookup-me (no email)
        "x" => {
            let data = &user["data"];
            Some(Profile {
                provider_id: text(&data["id"])?,
                email: None,
                email_verified: false,
                name: text(&data["name"]).or_else(|| text(&data["username"])),
                avatar_url: text(&data["profile_image_url"]),
            })
        }
        _ => None,
    }
}

/// Maps OpenID Connect claims (ID token and/or userinfo) to a profile.
pub fn map_oidc_claims(claims: &Value) -> Option<Profile> {
    let email = text(&claims["email"]);
    Some(Profile {
        provider_id: text(&claims["sub"])?,
        email_verified: email.is_some()
            && (claims["email_verified"] == true || claims["email_verified"] == "true"),
        email,
        name: text(&claims["name"]).or_else(|| text(&claims["preferred_username"])),
        avatar_url: text(&claims["picture"]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_endpoints() {
        let Ok(Kind::OAuth2(gh)) = resolve("github", None) else {
            panic!("github is OAuth 2")
        };
        assert_eq!(gh.authorize_url, "https://github.com/login/oauth/authorize");
        assert_eq!(gh.token_url, "https://github.com/login/oauth/access_token");
        assert_eq!(
            resolve("google", None),
            Ok(Kind::Oidc {
                issuer: "https://accounts.google.com".into()
            })
        );
        assert_eq!(
            resolve("azure", Some("contoso.onmicrosoft.com")),
            Ok(Kind::Oidc {
                issuer: "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0".into()
            })
        );
        assert_eq!(
            resolve("azure", None),
            Ok(Kind::Oidc {
                issuer: "https://login.microsoftonline.com/common/v2.0".into()
            })
        );
        let Ok(Kind::OAuth2(x)) = resolve("x", None) else {
            panic!("x is OAuth 2")
        };
        assert!(x.pkce && x.basic_auth);
        assert!(resolve("oidc", None).is_err());
        assert_eq!(
            resolve("apple", None),
            Ok(Kind::Oidc {
                issuer: "https://appleid.apple.com".into()
            })
        );
        assert!(resolve("myspace", None).is_err());
    }

    #[test]
    fn github_profiles() {
        let user = json!({"login": "octocat", "id": 1, "avatar_url": "https://a/1", "name": null, "email": null});
        let emails = json!([
            {"email": "old@x.io", "primary": false, "verified": true},
            {"email": "octo@x.io", "primary": true, "verified": true}
        ]);
        let p = map_profile("github", &user, Some(&emails)).unwrap();
        assert_eq!(p.provider_id, "1");
        assert_eq!(p.email.as_deref(), Some("octo@x.io"));
        assert!(p.email_verified);
        assert_eq!(p.name.as_deref(), Some("octocat"));
        // A public but unverified email is not trusted for linking.
        let user = json!({"login": "u", "id": 2, "email": "pub@x.io"});
        let p = map_profile("github", &user, None).unwrap();
        assert_eq!(p.email.as_deref(), Some("pub@x.io"));
        assert!(!p.email_verified);
    }

    #[test]
    fn discord_facebook_x_profiles() {
        let d = json!({"id": "80351110224678912", "username": "nelly", "global_name": "Nelly",
                       "avatar": "8342729096ea3675442027381ff50dfe", "verified": true, "email": "nelly@discord.com"});
        let p = map_profile("discord", &d, None).unwrap();
        assert_eq!(p.email.as_deref(), Some("nelly@discord.com"));
        assert!(p.email_verified);
        assert_eq!(
            p.avatar_url.as_deref(),
            Some(
                "https://cdn.discordapp.com/avatars/80351110224678912/8342729096ea3675442027381ff50dfe.png"
            )
        );
        let f = json!({"id": "10", "name": "Fay", "email": "fay@fb.com",
                       "picture": {"data": {"url": "https://fb/p.jpg"}}});
        let p = map_profile("facebook", &f, None).unwrap();
        assert_eq!(p.avatar_url.as_deref(), Some("https://fb/p.jpg"));
        assert!(p.email_verified);
        let x = json!({"data": {"id": "2244994945", "name": "X Dev", "username": "XDevelopers"}});
        let p = map_profile("x", &x, None).unwrap();
        assert_eq!(p.provider_id, "2244994945");
        assert_eq!(p.email, None);
        assert!(map_profile("github", &json!({}), None).is_none());
    }

    #[test]
    fn oidc_claims() {
        let p = map_oidc_claims(
            &json!({"sub": "abc", "email": "a@b.c", "email_verified": true,
                                        "name": "A", "picture": "https://p"}),
        )
        .unwrap();
        assert!(p.email_verified);
        let p = map_oidc_claims(&json!({"sub": "abc", "email": "a@b.c"})).unwrap();
        assert!(!p.email_verified);
        assert!(map_oidc_claims(&json!({"email": "a@b.c"})).is_none());
    }
}
