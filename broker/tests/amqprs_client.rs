//! The same basics through amqprs, an independent Rust AMQP client, to check Warren against a real
//! client's expectations (handshake, capabilities, publish/consume/ack, get, qos, errors).
mod common;
use amqprs::callbacks::ChannelCallback;
use amqprs::channel::{
    BasicAckArguments, BasicConsumeArguments, BasicGetArguments, BasicPublishArguments, BasicQosArguments, Channel,
    QueueBindArguments, QueueDeclareArguments,
};
use amqprs::{Ack, BasicProperties, Cancel, CloseChannel, Nack, Return};
use common::{unique, TestBroker};
use std::time::Duration;
use tokio::sync::mpsc;

/// Records channel.close codes sent by the broker.
struct CloseRecorder(mpsc::UnboundedSender<(u16, String)>);

#[async_trait::async_trait]
impl ChannelCallback for CloseRecorder {
    async fn close(&mut self, _c: &Channel, close: CloseChannel) -> Result<(), amqprs::error::Error> {
        let _ = self.0.send((close.reply_code(), close.reply_text().clone()));
        Ok(())
    }
    async fn cancel(&mut self, _c: &Channel, _x: Cancel) -> Result<(), amqprs::error::Error> {
        Ok(())
    }
    async fn flow(&mut self, _c: &Channel, active: bool) -> Result<bool, amqprs::error::Error> {
        Ok(active)
    }
    async fn publish_ack(&mut self, _c: &Channel, _a: Ack) {}
    async fn publish_nack(&mut self, _c: &Channel, _n: Nack) {}
    async fn publish_return(&mut self, _c: &Channel, _r: Return, _p: BasicProperties, _b: Vec<u8>) {}
}

#[tokio::test]
async fn amqprs_sees_rabbitmq_capabilities() {
    let b = TestBroker::start().await;
    let conn = b.amqprs().await;
    let props = conn.server_properties();
    let caps = props.capabilities();
    assert!(
        caps.publisher_confirms()
            && caps.consumer_cancel_notify()
            && caps.basic_nack()
            && caps.exchange_exchange_bindings()
    );
    assert!(
        caps.authentication_failure_close()
            && caps.per_consumer_qos()
            && caps.connection_blocked()
            && caps.consumer_priorities()
    );
    assert!(caps.direct_reply_to());
    // A drop-in announces itself as the RabbitMQ it follows (clients branch on it).
    assert_eq!(props.product(), "RabbitMQ");
    assert_eq!(conn.frame_max(), 131072);
    conn.close().await.unwrap();
    b.stop().await;
}

#[tokio::test]
async fn amqprs_publish_consume_ack() {
    let b = TestBroker::start().await;
    let conn = b.amqprs().await;
    let ch = conn.open_channel(None).await.unwrap();
    let q = unique("amqprs");
    let (name, _, _) = ch.queue_declare(QueueDeclareArguments::new(&q)).await.unwrap().unwrap();
    assert_eq!(name, q);
    ch.queue_bind(QueueBindArguments::new(&q, "amq.direct", "key")).await.unwrap();
    ch.basic_qos(BasicQosArguments::new(0, 10, false)).await.unwrap();
    for i in 0..50u32 {
        ch.basic_publish(
            BasicProperties::default(),
            i.to_be_bytes().to_vec(),
            BasicPublishArguments::new("amq.direct", "key"),
        )
        .await
        .unwrap();
    }
    let (_tag, mut rx) =
        ch.basic_consume_rx(BasicConsumeArguments::new(&q, "").manual_ack(true).finish()).await.unwrap();
    for i in 0..50u32 {
        let m = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("delivery").expect("open");
        assert_eq!(m.content.unwrap(), i.to_be_bytes().to_vec(), "FIFO order");
        ch.basic_ack(BasicAckArguments::new(m.deliver.unwrap().delivery_tag(), false)).await.unwrap();
    }
    let (_, count, consumers) =
        ch.queue_declare(QueueDeclareArguments::new(&q).passive(true).finish()).await.unwrap().unwrap();
    assert_eq!((count, consumers), (0, 1));
    conn.close().await.unwrap();
    b.stop().await;
}

#[tokio::test]
async fn amqprs_get_and_channel_error() {
    let b = TestBroker::start().await;
    let conn = b.amqprs().await;
    let ch = conn.open_channel(None).await.unwrap();
    let (tx, mut closes) = mpsc::unbounded_channel();
    ch.register_callback(CloseRecorder(tx)).await.unwrap();
    let q = unique("amqprs-get");
    ch.queue_declare(QueueDeclareArguments::new(&q)).await.unwrap();
    ch.basic_publish(BasicProperties::default(), b"hi".to_vec(), BasicPublishArguments::new("", &q)).await.unwrap();
    let (_, _, body) =
        ch.basic_get(BasicGetArguments::new(&q).no_ack(true).finish()).await.unwrap().expect("a message");
    assert_eq!(body, b"hi");
    assert!(ch.basic_get(BasicGetArguments::new(&q)).await.unwrap().is_none());
    // A passive declare of a missing queue closes the channel with 404.
    let r = ch.queue_declare(QueueDeclareArguments::new("amqprs-missing").passive(true).finish()).await;
    assert!(r.is_err());
    let (code, text) = tokio::time::timeout(Duration::from_secs(5), closes.recv()).await.unwrap().unwrap();
    assert_eq!(code, 404);
    assert!(text.contains("amqprs-missing"));
    // Other channels keep working.
    let ch2 = conn.open_channel(None).await.unwrap();
    ch2.queue_declare(QueueDeclareArguments::new(&q)).await.unwrap();
    conn.close().await.unwrap();
    b.stop().await;
}
