//! The MCP server: rmcp's `ServerHandler` over the tool table and the resources, for either
//! backend. Who calls comes from the HTTP request (the bearer token the `/mcp` guard checked)
//! or, on the stdio bridge, from the coordinator's answer about the bridge's token.

use std::sync::Arc;

use cortex_model::token::Scope;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ErrorData, Implementation, ListResourceTemplatesResult,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams,
    ReadResourceResponse, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler};

use super::backend::{Backend, Remote};
use super::error::Kind;
use super::tools::{self, Call};
use super::wait::Progress;
use super::{resources, INSTRUCTIONS};
use crate::api::{Caller, NodeApi};
use crate::client::ClientArgs;

#[derive(Clone)]
pub struct CortexMcp {
    backend: Backend,
    /// The stdio bridge's token, as the coordinator described it (asked once it answers).
    known: Arc<tokio::sync::OnceCell<Caller>>,
}

impl CortexMcp {
    /// In a coordinator, over its own `NodeApi`.
    pub fn local(api: NodeApi) -> Self {
        CortexMcp {
            backend: Backend::Local(api),
            known: Arc::default(),
        }
    }

    /// The stdio bridge, over a coordinator's gRPC API.
    pub fn remote(args: ClientArgs) -> Self {
        CortexMcp {
            backend: Backend::Remote(Arc::new(Remote::new(args))),
            known: Arc::default(),
        }
    }

    /// Who makes this request. Over HTTP: the caller the guard put on the request (always
    /// there: the guard answers 401 without it). On the bridge: the token's identity, or
    /// `Err(scope)` with the scope to assume while the coordinator has not said.
    async fn caller(&self, ctx: &RequestContext<RoleServer>) -> Result<Caller, Option<Scope>> {
        match &self.backend {
            Backend::Local(_) => ctx
                .extensions
                .get::<axum::http::request::Parts>()
                .and_then(|p| p.extensions.get::<Caller>())
                .cloned()
                .ok_or(Some(Scope::Read)),
            Backend::Remote(_) => {
                if let Some(c) = self.known.get() {
                    return Ok(c.clone());
                }
                match self.backend.whoami().await {
                    Ok(c) => Ok(self.known.get_or_init(|| async { c }).await.clone()),
                    // No usable token: only reads can work.
                    Err(e) if e.kind == Kind::Unauthenticated => Err(Some(Scope::Read)),
                    // Not reachable yet: offer everything; the coordinator checks each call.
                    Err(_) => Err(None),
                }
            }
        }
    }
}

impl ServerHandler for CortexMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(
            Implementation::new("cortex", env!("CARGO_PKG_VERSION")).with_title("Cortex cluster"),
        )
        .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let scope = match self.caller(&ctx).await {
            Ok(c) => Some(c.scope),
            Err(assumed) => assumed,
        };
        Ok(ListToolsResult::with_all_items(tools::list(scope)))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        tools::get(name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = self.caller(&ctx).await.ok();
        let read_only = Caller {
            token_id: "unknown".into(),
            scope: Scope::Read,
        };
        // Over HTTP a missing caller cannot happen (the guard); treat it as read-only anyway.
        let caller = match (&self.backend, caller) {
            (_, Some(c)) => Some(c),
            (Backend::Local(_), None) => Some(read_only),
            (Backend::Remote(_), None) => None,
        };
        let call = Call {
            backend: &self.backend,
            caller: caller.as_ref(),
            progress: ctx.meta.get_progress_token().map(|token| Progress {
                peer: ctx.peer.clone(),
                token,
            }),
            cancelled: ctx.ct.clone(),
        };
        match tools::call(&call, &request.name, request.arguments).await {
            Some(result) => Ok(result.into()),
            None => Err(ErrorData::invalid_params(
                format!("no tool named {:?}; tools/list shows the tools", request.name),
                None,
            )),
        }
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        resources::list(&self.backend).await
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(resources::templates())
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        Ok(resources::read(&self.backend, &request.uri).await?.into())
    }
}
