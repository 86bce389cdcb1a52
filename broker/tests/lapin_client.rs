//! lapin (without default features, on tokio) against Warren: the publisher-confirm flow lapin
//! users rely on, plus consume/ack.
mod common;
use common::{unique, TestBroker};
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lapin_confirms_and_consume() {
    let b = TestBroker::start().await;
    let uri = format!("amqp://guest:guest@127.0.0.1:{}/%2f", b.port());
    let conn = Connection::connect(&uri, ConnectionProperties::default()).await.expect("lapin connects");
    let ch = conn.create_channel().await.unwrap();
    let q = unique("lapin");
    ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let mut pending = Vec::new();
    for i in 0..500u32 {
        let confirm = ch
            .basic_publish(
                "".into(),
                q.as_str().into(),
                BasicPublishOptions::default(),
                &i.to_be_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap();
        pending.push(confirm);
    }
    for c in pending {
        assert!(c.await.unwrap().is_ack(), "every publish is acked");
    }
    // Mandatory + unroutable: confirmed (acked) with the returned message attached.
    let c = ch
        .basic_publish(
            "".into(),
            "no-such-queue".into(),
            BasicPublishOptions { mandatory: true, ..Default::default() },
            b"x",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(c.is_ack());
    assert!(c.take_message().is_some(), "the basic.return came before the ack");
    let ok = ch
        .queue_declare(
            q.as_str().into(),
            QueueDeclareOptions { passive: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(ok.message_count(), 500);
    conn.close(200, "bye".into()).await.unwrap();
    b.stop().await;
}
