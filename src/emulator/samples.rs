//! The sample payloads of `fixtures/events/`, embedded so the emulator can push realistic
//! events with no file access (from JS as well as from Rust). `card-action-reply.json`
//! is left out: it is what a handler returns, not something Feishu pushes.

/// (name, JSON) of every sample, sorted by name; the name is the file stem.
const SAMPLES: &[(&str, &str)] = &[
    (
        "bot-added",
        include_str!("../../fixtures/events/bot-added.json"),
    ),
    (
        "bot-menu",
        include_str!("../../fixtures/events/bot-menu.json"),
    ),
    (
        "bot-p2p-chat-entered",
        include_str!("../../fixtures/events/bot-p2p-chat-entered.json"),
    ),
    (
        "card-action-trigger",
        include_str!("../../fixtures/events/card-action-trigger.json"),
    ),
    (
        "message-receive-group-mention",
        include_str!("../../fixtures/events/message-receive-group-mention.json"),
    ),
    (
        "message-receive-image",
        include_str!("../../fixtures/events/message-receive-image.json"),
    ),
    (
        "message-receive-post",
        include_str!("../../fixtures/events/message-receive-post.json"),
    ),
    (
        "message-receive-text",
        include_str!("../../fixtures/events/message-receive-text.json"),
    ),
    (
        "reaction-created",
        include_str!("../../fixtures/events/reaction-created.json"),
    ),
    (
        "v1-message-text",
        include_str!("../../fixtures/events/v1-message-text.json"),
    ),
];

/// Every sample: (name, payload JSON text), sorted by name.
pub fn samples() -> Vec<(&'static str, &'static str)> {
    SAMPLES.to_vec()
}

/// The names of the samples, sorted.
pub fn sample_names() -> Vec<&'static str> {
    SAMPLES.iter().map(|(n, _)| *n).collect()
}

/// One sample's payload by name.
pub fn sample(name: &str) -> Option<&'static str> {
    SAMPLES.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fixture_is_embedded_and_parses() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/events");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                name.strip_suffix(".json").map(str::to_string)
            })
            .filter(|n| n != "card-action-reply")
            .collect();
        on_disk.sort();
        assert_eq!(sample_names(), on_disk);
        for (name, json) in samples() {
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            assert!(v.is_object(), "{name}");
        }
        assert!(sample("message-receive-text").is_some());
        assert!(sample("card-action-reply").is_none());
    }
}
