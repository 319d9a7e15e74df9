//! `cortex token create|list|revoke`.

use cortex_proto::v1::{CreateTokenRequest, ListTokensRequest, RevokeTokenRequest, Token};

use super::output::{self, Output};
use crate::client::{Client, ClientArgs};

#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Mint a token. Prints it once; only its hash is stored. Join tokens need scope operate,
    /// API tokens admin.
    Create {
        /// `join` (lets a machine ask to join) or `api` (bearer token for the API).
        #[arg(long, default_value = "join", value_parser = ["join", "api"])]
        kind: String,
        /// API tokens: read, operate or admin.
        #[arg(long, default_value = "read", value_parser = ["read", "operate", "admin"])]
        scope: String,
        /// Lifetime, e.g. 30m, 1h, 7d (default: never expires).
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<u64>,
        /// Join tokens: how many machines may join with it (default: unlimited).
        #[arg(long)]
        uses: Option<u32>,
        /// Join tokens: approve joiners without a person. Off unless given.
        #[arg(long)]
        auto_approve: bool,
        /// A name to recognise it by in `token list`.
        #[arg(long, default_value = "")]
        name: String,
        /// Join tokens: coordinator addresses to put in the token (default: the cluster's coordinators).
        #[arg(long = "join-addr", value_name = "IP:PORT")]
        join_addrs: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List tokens (never their secrets).
    List(ClientArgs),
    /// Revoke a token by id; it stops working at once.
    Revoke {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `90s`, `30m`, `1h`, `7d` → seconds.
fn parse_ttl(s: &str) -> Result<u64, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("--ttl {s:?}: expected a number with s, m, h or d"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("--ttl {s:?}: unknown unit {unit:?} (s, m, h or d)")),
    };
    if n == 0 {
        return Err("--ttl must be positive".into());
    }
    n.checked_mul(mult)
        .ok_or_else(|| format!("--ttl {s:?} is too long"))
}

pub async fn run(cmd: TokenCommand, out: Output) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create {
            kind,
            scope,
            ttl,
            uses,
            auto_approve,
            name,
            join_addrs,
            client,
        } => {
            let mut c = Client::connect(&client).await?;
            let req = c.request(CreateTokenRequest {
                kind,
                scope,
                name,
                ttl_seconds: ttl.unwrap_or(0),
                uses: uses.unwrap_or(0),
                auto_approve,
                join_addrs,
            });
            let resp = c
                .grpc
                .create_token(req)
                .await
                .map_err(|e| c.error(e))?
                .into_inner();
            if out == Output::Json {
                let t = resp.token.as_ref().map(token_json);
                return output::print_json(&serde_json::json!({ "token": t, "secret": resp.secret }));
            }
            // The secret alone on stdout, so `T=$(cortex token create)` works; details on stderr.
            if let Some(t) = &resp.token {
                eprintln!(
                    "created {} token {} ({}); it is shown only now",
                    t.kind,
                    t.id,
                    describe(t)
                );
            }
            println!("{}", resp.secret);
        }
        TokenCommand::List(client) => {
            let mut c = Client::connect(&client).await?;
            let req = c.request(ListTokensRequest {});
            let tokens = c
                .grpc
                .list_tokens(req)
                .await
                .map_err(|e| c.error(e))?
                .into_inner()
                .tokens;
            if out == Output::Json {
                let v: Vec<_> = tokens.iter().map(token_json).collect();
                return output::print_json(&serde_json::json!({ "tokens": v }));
            }
            let rows: Vec<Vec<String>> = tokens
                .iter()
                .map(|t| vec![t.id.clone(), t.name.clone(), t.kind.clone(), describe(t)])
                .collect();
            print!("{}", output::table(&["id", "name", "kind", "details"], &rows));
        }
        TokenCommand::Revoke { id, client } => {
            let mut c = Client::connect(&client).await?;
            let req = c.request(RevokeTokenRequest { id });
            let t = c
                .grpc
                .revoke_token(req)
                .await
                .map_err(|e| c.error(e))?
                .into_inner();
            if out == Output::Json {
                return output::print_json(&token_json(&t));
            }
            println!("token {} revoked", t.id);
        }
    }
    Ok(())
}

fn describe(t: &Token) -> String {
    let mut parts = Vec::new();
    if t.kind == "api" {
        parts.push(format!("scope {}", t.scope));
    }
    if let Some(exp) = t.expires_at_ms {
        let left = exp.saturating_sub(crate::api::now_ms());
        parts.push(if left == 0 {
            "expired".into()
        } else {
            format!("expires in {}", output::duration_ms(left))
        });
    }
    if let Some(u) = t.uses_left {
        parts.push(format!("{u} uses left"));
    }
    if t.auto_approve {
        parts.push("auto-approve".into());
    }
    if t.revoked {
        parts.push("REVOKED".into());
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

fn token_json(t: &Token) -> serde_json::Value {
    serde_json::json!({
        "id": t.id, "name": t.name, "kind": t.kind, "scope": t.scope,
        "created_at_ms": t.created_at_ms, "expires_at_ms": t.expires_at_ms,
        "revoked": t.revoked, "uses_left": t.uses_left, "auto_approve": t.auto_approve,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("90"), Ok(90));
        assert_eq!(parse_ttl("30m"), Ok(1800));
        assert_eq!(parse_ttl("7d"), Ok(604_800));
        assert!(parse_ttl("1w").unwrap_err().contains("unknown unit"));
        assert!(parse_ttl("0h").is_err());
    }
}
