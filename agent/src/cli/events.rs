//! `cortex events`: the event timeline.

use cortex_model::state::Event;
use cortex_proto::v1::ListEventsRequest;

use super::output::{self, Output};
use crate::client::{Client, ClientArgs};

pub async fn run(args: &ClientArgs, after: u64, limit: u32, out: Output) -> anyhow::Result<()> {
    let mut c = Client::connect(args).await?;
    let req = c.request(ListEventsRequest {
        after_seq: after,
        limit,
    });
    let json = c
        .grpc
        .list_events(req)
        .await
        .map_err(|e| c.error(e))?
        .into_inner()
        .events_json;
    let events: Vec<Event> = serde_json::from_str(&json)?;
    if out == Output::Json {
        return output::print_json(&serde_json::json!({ "events": events }));
    }
    let now = crate::api::now_ms();
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                e.seq.to_string(),
                format!("{} ago", output::duration_ms(now.saturating_sub(e.at_ms))),
                e.kind.clone(),
                e.message.clone(),
            ]
        })
        .collect();
    print!("{}", output::table(&["seq", "when", "kind", "message"], &rows));
    Ok(())
}
