#![allow(clippy::unwrap_used)]

use super::*;

#[test]
fn given_urls_when_adding_the_connection_settings_then_existing_settings_win() {
    assert_eq!(
        with_defaults("amqp://h:5672/%2f", 30),
        "amqp://h:5672/%2f?heartbeat=30&frame_max=16384"
    );
    assert_eq!(
        with_defaults("amqp://h/?frame_max=8192", 30),
        "amqp://h/?frame_max=8192&heartbeat=30"
    );
    assert_eq!(with_defaults("amqp://h/?heartbeat=5", 30), "amqp://h/?heartbeat=5&frame_max=16384");
    // A password that merely contains the words is not a setting.
    assert_eq!(
        with_defaults("amqp://u:heartbeat=1@h/", 30),
        "amqp://u:heartbeat=1@h/?heartbeat=30&frame_max=16384"
    );
    let parsed: lapin::uri::AMQPUri = with_defaults("amqp://h/", 30).parse().unwrap();
    assert_eq!(parsed.query.frame_max, Some(FRAME_MAX));
}

#[test]
fn given_rabbitmq_refusals_when_reading_the_existing_queue_type_then_it_is_named() {
    let quorum = "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'dms.n1' in \
                  vhost '/': received none but current is the value 'quorum' of type 'longstr'";
    assert_eq!(existing_queue_type(quorum).as_deref(), Some("quorum"));
    let classic = "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'dms.n1' in \
                   vhost '/': received the value 'quorum' of type 'longstr' but current is none";
    assert_eq!(existing_queue_type(classic).as_deref(), Some("classic"));
    let stream = "inequivalent arg 'x-queue-type' for queue 'q' in vhost '/': received none but \
                  current is the value 'stream' of type 'longstr'";
    assert_eq!(existing_queue_type(stream).as_deref(), Some("stream"));
    let durable = "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'dms.n1' in vhost \
                   '/': received 'true' but current is 'false'";
    assert_eq!(existing_queue_type(durable), None);
}

#[test]
fn given_a_queue_type_when_declaring_then_classic_has_no_arguments_and_quorum_says_so() {
    assert_eq!(arguments(QueueType::Classic), FieldTable::default());
    let quorum = arguments(QueueType::Quorum);
    let (key, value) = quorum.inner().iter().next().unwrap();
    assert_eq!((key.as_str(), quorum.inner().len()), ("x-queue-type", 1));
    assert_eq!(value, &AMQPValue::LongString("quorum".into()));
}

#[test]
fn given_a_type_mismatch_when_shown_then_the_line_names_both_types_and_the_key_to_set() {
    let e = OpenError::QueueTypeMismatch {
        queue: "dms.n1".into(),
        existing: "quorum".into(),
        declared: QueueType::Classic,
        message: "PRECONDITION_FAILED - inequivalent arg".into(),
    };
    let line = e.to_string();
    assert!(line.starts_with("queue dms.n1 exists as a quorum queue but this daemon declares it classic (queue_type = classic): set queue_type = quorum in /etc/trilio-dms/server.conf or DMS_QUEUE_TYPE=quorum"), "{line}");
}
