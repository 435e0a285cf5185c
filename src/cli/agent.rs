//! `nodegate agent-worker`: registers, connects, subscribes, and logs what arrives.

use futures_util::StreamExt as _;
use tracing::info;

use crate::config::{Config, Host};
use crate::tokio_adapter::member;

/// Runs the agent worker to its exit status.
pub(super) async fn run(config: Config, host: Host) -> u8 {
    let mut agent = match member::start_agent(config, host).await {
        Ok(agent) => agent,
        Err(code) => return code,
    };
    for (subscription, mut subscriber) in agent.take_subscriptions() {
        tokio::spawn(async move {
            while let Some(message) = subscriber.next().await {
                info!(
                    subject = %message.subject,
                    bytes = message.payload.len(),
                    reply = message.reply.is_some(),
                    "agent message received on {}",
                    subscription.subject
                );
            }
        });
    }
    info!(
        node = agent.node_id(),
        "agent worker is serving its subjects"
    );
    agent.wait().await
}
