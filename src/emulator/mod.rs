//! A local Feishu long-connection server: discovery, the WebSocket, pongs, fragments,
//! cluster delivery, re-delivery and faults on demand.
