//! The stable, machine-readable rule ids a refusal or finding names; clients key on these.

/// A required field is absent, empty or only whitespace.
pub const REQUIRED: &str = "required";
/// The value has the wrong JSON type, or an XML value does not read as the expected type.
pub const WRONG_TYPE: &str = "wrong_type";
/// A list that needs at least one entry has none.
pub const EMPTY: &str = "empty";
/// A value is present where the format does not allow one (a position on a face template,
/// a second element the format allows once).
pub const UNEXPECTED: &str = "unexpected";
/// Not one of the values the system's format defines.
pub const UNKNOWN_ENUM_VALUE: &str = "unknown_enum_value";
/// Not a valid (partial) calendar date.
pub const INVALID_DATE: &str = "invalid_date";
/// Not an alpha-3 country code or an alpha-2 member-state code.
pub const INVALID_COUNTRY_CODE: &str = "invalid_country_code";
/// Not an RFC 3339 timestamp.
pub const INVALID_TIMESTAMP: &str = "invalid_timestamp";
/// A number outside its allowed range.
pub const OUT_OF_RANGE: &str = "out_of_range";
/// A template names an algorithm the hub's configuration does not register.
pub const UNREGISTERED_ALGORITHM: &str = "unregistered_algorithm";
/// A template's algorithm is registered for another modality.
pub const ALGORITHM_MODALITY_MISMATCH: &str = "algorithm_modality_mismatch";
/// A template vector's length is not its algorithm's dimension.
pub const WRONG_DIMENSION: &str = "wrong_dimension";
/// Template data is not base64 of whole little-endian float32 values.
pub const INVALID_BASE64: &str = "invalid_base64";
/// A template vector holds NaN or an infinity.
pub const NOT_FINITE: &str = "not_finite";
/// A template vector is all zeros: it has no direction to compare.
pub const ZERO_VECTOR: &str = "zero_vector";
/// Text holds a control character (NUL and the like), which no name, id or code contains.
pub const CONTROL_CHARACTER: &str = "control_character";
/// Text holds an invisible formatting character (a bidirectional control, a zero-width
/// character, a soft hyphen…), which makes one value display like another. Names keep a
/// zero-width joiner or non-joiner between letters, which some scripts spell with.
pub const FORBIDDEN_CHARACTER: &str = "forbidden_character";
/// Text is longer than its kind's bound ([`crate::bounds`]); nothing else reads it.
pub const TOO_LONG: &str = "too_long";
/// A list has more entries than its bound ([`crate::bounds`]); none of them is read.
pub const TOO_MANY: &str = "too_many";

/// Every refusal rule, for documentation and exhaustive tests.
pub const ALL: [&str; 19] = [
    REQUIRED,
    WRONG_TYPE,
    EMPTY,
    UNEXPECTED,
    UNKNOWN_ENUM_VALUE,
    INVALID_DATE,
    INVALID_COUNTRY_CODE,
    INVALID_TIMESTAMP,
    OUT_OF_RANGE,
    UNREGISTERED_ALGORITHM,
    ALGORITHM_MODALITY_MISMATCH,
    WRONG_DIMENSION,
    INVALID_BASE64,
    NOT_FINITE,
    ZERO_VECTOR,
    CONTROL_CHARACTER,
    FORBIDDEN_CHARACTER,
    TOO_LONG,
    TOO_MANY,
];

/// The non-blocking finding for a template kept out of the biometric index.
pub const TEMPLATE_BELOW_MINIMUM_QUALITY: &str = "template_below_minimum_quality";
