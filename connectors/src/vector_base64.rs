//! Template vectors as bytes (little-endian IEEE-754 float32 values) and on the wire
//! (base64 of those bytes).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

pub fn to_bytes(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// `None` when the length is not a whole number of float32s.
pub fn from_bytes(bytes: &[u8]) -> Option<Vec<f32>> {
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

pub fn encode(vector: &[f32]) -> String {
    STANDARD.encode(to_bytes(vector))
}

/// `None` when the text is not base64 or its length is not a whole number of float32s.
pub fn decode(text: &str) -> Option<Vec<f32>> {
    from_bytes(&STANDARD.decode(text.trim()).ok()?)
}

pub fn serialize<S: serde::Serializer>(vector: &[f32], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&encode(vector))
}

pub fn deserialize<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<f32>, D::Error> {
    let text = <String as serde::Deserialize>::deserialize(deserializer)?;
    decode(&text)
        .ok_or_else(|| serde::de::Error::custom("expected base64 of little-endian float32 values"))
}
