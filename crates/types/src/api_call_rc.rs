//! The `ApiCallRc` envelope: LINSTOR's answer to every mutating REST call.
//!
//! A `ret_code` is a signed 64-bit integer made of bit fields: the message type in bits 62–63
//! (error, warning, info, success), the operation in bits 24–25 (create, modify, delete), the
//! object type in bits 18–22 and a code in bits 0–14. Clients test the masks, so the numbers
//! here are LINSTOR's, and the value goes on the wire as a *signed* integer (golinstor decodes it
//! into an `int64`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Bit masks and codes, with LINSTOR's names and values.
pub mod mask {
    pub const ERROR: u64 = 0xC000_0000_0000_0000;
    pub const WARN: u64 = 0x8000_0000_0000_0000;
    pub const INFO: u64 = 0x4000_0000_0000_0000;
    pub const SUCCESS: u64 = 0;
    pub const TYPE_BITS: u64 = 0xC000_0000_0000_0000;

    pub const CRT: u64 = 0x0100_0000;
    pub const MOD: u64 = 0x0200_0000;
    pub const DEL: u64 = 0x0300_0000;
    pub const OP_BITS: u64 = 0x0300_0000;

    pub const SNAPSHOT: u64 = 0x0C_0000;
    pub const CTRL_CONF: u64 = 0x10_0000;
    pub const STOR_POOL: u64 = 0x14_0000;
    pub const STOR_POOL_DFN: u64 = 0x18_0000;
    pub const NET_IF: u64 = 0x1C_0000;
    pub const VLM: u64 = 0x2C_0000;
    pub const VLM_DFN: u64 = 0x30_0000;
    pub const RSC: u64 = 0x34_0000;
    pub const RSC_DFN: u64 = 0x38_0000;
    pub const NODE: u64 = 0x3C_0000;
    pub const KVS: u64 = 0x40_0000;
    pub const NODE_CONN: u64 = 0x28_0000;
    pub const RSC_CONN: u64 = 0x24_0000;
    pub const RSC_GRP: u64 = 0x44_0000;
    pub const VLM_GRP: u64 = 0x48_0000;
    pub const OBJ_BITS: u64 = 0x7C_0000;

    pub const CODE_BITS: u64 = 0x7FFF;
}

/// The low 15 bits of a `ret_code`: what happened.
pub mod code {
    pub const CREATED: u64 = 1;
    pub const DELETED: u64 = 2;
    pub const MODIFIED: u64 = 3;

    pub const FAIL_SQL: u64 = 100;

    pub const FAIL_INVLD_NODE_NAME: u64 = 200;
    pub const FAIL_INVLD_NODE_TYPE: u64 = 201;
    pub const FAIL_INVLD_RSC_NAME: u64 = 202;
    pub const FAIL_INVLD_NODE_ID: u64 = 204;
    pub const FAIL_INVLD_VLM_NR: u64 = 205;
    pub const FAIL_INVLD_VLM_SIZE: u64 = 206;
    pub const FAIL_INVLD_MINOR_NR: u64 = 207;
    pub const FAIL_INVLD_STOR_POOL_NAME: u64 = 208;
    pub const FAIL_INVLD_NET_NAME: u64 = 209;
    pub const FAIL_INVLD_NET_ADDR: u64 = 210;
    pub const FAIL_INVLD_NET_PORT: u64 = 211;
    pub const FAIL_INVLD_NET_TYPE: u64 = 212;
    pub const FAIL_INVLD_PROP: u64 = 213;
    pub const FAIL_INVLD_TCP_PORT: u64 = 215;
    pub const FAIL_INVLD_ENCRYPT_TYPE: u64 = 217;
    pub const FAIL_INVLD_SNAPSHOT_NAME: u64 = 218;
    pub const FAIL_INVLD_PLACE_COUNT: u64 = 219;
    pub const FAIL_INVLD_STOR_DRIVER: u64 = 221;
    pub const FAIL_INVLD_LAYER_KIND: u64 = 224;
    pub const FAIL_INVLD_LAYER_STACK: u64 = 225;
    pub const FAIL_INVLD_PROVIDER: u64 = 227;
    pub const FAIL_INVLD_VLM_SIZES: u64 = 228;
    pub const FAIL_INVLD_VLM_COUNT: u64 = 229;
    pub const FAIL_INVLD_CONF: u64 = 230;
    pub const FAIL_INVLD_REQUEST: u64 = 234;
    pub const FAIL_INVLD_RSC_GRP_NAME: u64 = 237;

    pub const FAIL_NOT_FOUND_NODE: u64 = 300;
    pub const FAIL_NOT_FOUND_RSC_DFN: u64 = 301;
    pub const FAIL_NOT_FOUND_RSC: u64 = 302;
    pub const FAIL_NOT_FOUND_VLM_DFN: u64 = 303;
    pub const FAIL_NOT_FOUND_VLM: u64 = 304;
    pub const FAIL_NOT_FOUND_NET_IF: u64 = 305;
    pub const FAIL_NOT_FOUND_STOR_POOL_DFN: u64 = 309;
    pub const FAIL_NOT_FOUND_STOR_POOL: u64 = 310;
    pub const FAIL_NOT_FOUND_SNAPSHOT_DFN: u64 = 313;
    pub const FAIL_NOT_FOUND_RSC_GRP: u64 = 317;
    pub const FAIL_NOT_FOUND_VLM_GRP: u64 = 318;
    pub const FAIL_NOT_FOUND_NODE_CONN: u64 = 306;
    pub const FAIL_NOT_FOUND_RSC_CONN: u64 = 307;
    pub const FAIL_NOT_FOUND_KVS: u64 = 316;
    pub const FAIL_INVLD_KVS_NAME: u64 = 223;
    /// Ferrite's own: no error report with that id. (LINSTOR's not-found codes end at 323.)
    pub const FAIL_NOT_FOUND_ERROR_REPORT: u64 = 399;

    pub const FAIL_EXISTS_NODE: u64 = 500;
    pub const FAIL_EXISTS_RSC_DFN: u64 = 501;
    pub const FAIL_EXISTS_RSC: u64 = 502;
    pub const FAIL_EXISTS_VLM_DFN: u64 = 503;
    pub const FAIL_EXISTS_NET_IF: u64 = 505;
    pub const FAIL_EXISTS_STOR_POOL: u64 = 510;
    pub const FAIL_EXISTS_SNAPSHOT: u64 = 516;
    pub const FAIL_EXISTS_RSC_GRP: u64 = 522;
    pub const FAIL_EXISTS_VLM_GRP: u64 = 523;

    pub const FAIL_POOL_EXHAUSTED_VLM_NR: u64 = 800;
    pub const FAIL_POOL_EXHAUSTED_MINOR_NR: u64 = 801;
    pub const FAIL_POOL_EXHAUSTED_TCP_PORT: u64 = 802;
    pub const FAIL_POOL_EXHAUSTED_NODE_ID: u64 = 803;

    pub const FAIL_EVACUATING: u64 = 975;
    pub const FAIL_NOT_ENOUGH_FREE_SPACE: u64 = 980;
    pub const FAIL_STLT_DOES_NOT_SUPPORT_LAYER: u64 = 988;
    pub const FAIL_STLT_DOES_NOT_SUPPORT_PROVIDER: u64 = 989;
    pub const FAIL_STOR_POOL_CONFIGURATION_ERROR: u64 = 990;
    pub const FAIL_INSUFFICIENT_REPLICA_COUNT: u64 = 991;
    pub const FAIL_NOT_CONNECTED: u64 = 995;
    pub const FAIL_NOT_ENOUGH_NODES: u64 = 996;
    pub const FAIL_IN_USE: u64 = 997;
    /// Ferrite's own: a LINSTOR call this controller does not implement (HTTP 501).
    pub const FAIL_NOT_IMPLEMENTED: u64 = 1999;
    pub const FAIL_UNKNOWN_ERROR: u64 = 998;
    pub const FAIL_IMPL_ERROR: u64 = 999;

    pub const WARN_NOT_CONNECTED: u64 = 1002;
    pub const WARN_STLT_NOT_UPDATED: u64 = 1003;
    pub const WARN_DEL_UNSET_PROP: u64 = 1005;
    pub const WARN_RSC_ALREADY_DEPLOYED: u64 = 1006;
    pub const WARN_RSC_ALREADY_HAS_DISK: u64 = 1007;
    pub const WARN_RSC_ALREADY_DISKLESS: u64 = 1008;
    pub const WARN_STORAGE_ERROR: u64 = 1010;
    pub const WARN_NOT_ENOUGH_NODES_FOR_TIE_BREAKER: u64 = 1013;
    pub const WARN_RSC_DEACTIVATED: u64 = 1018;
    pub const WARN_NOT_EVACUATING: u64 = 1020;
    pub const WARN_VLMDFN_RESIZE_SAME_SIZE: u64 = 1023;
    /// Ferrite's own: a resource was placed without a replication layer, so its replicas are
    /// independent volumes. (LINSTOR's warning codes end at 1025 and resume at 3000.)
    pub const WARN_NOT_REPLICATED: u64 = 1900;
    /// Ferrite's own: a `DrbdOptions/*` property was set that the MIRROR engine ignores.
    pub const WARN_OPTION_IGNORED: u64 = 1901;
    pub const WARN_NOT_FOUND: u64 = 3000;
    pub const WARN_NO_EFFECT: u64 = 3001;
    pub const WARN_DEPRECATED: u64 = 4000;

    pub const INFO_NO_RSC_SPAWNED: u64 = 10000;
    pub const INFO_PROP_SET: u64 = 10002;
    pub const INFO_TIE_BREAKER_CREATED: u64 = 10003;
    pub const INFO_TIE_BREAKER_DELETING: u64 = 10004;
    pub const INFO_TIE_BREAKER_TAKEOVER: u64 = 10006;
    pub const INFO_NOOP: u64 = 10007;
    pub const INFO_RSC_ALREADY_EXISTS: u64 = 10008;
    /// Ferrite's own: which replication engine (DRBD or MIRROR) a resource got, and why.
    /// (LINSTOR's info codes stay below 11000.)
    pub const INFO_REPLICATION_ENGINE: u64 = 19000;

    /// `MASK_ERROR | 0x0FFF_FFFF_FFFF_FFFD`: the request body could not be parsed.
    pub const API_CALL_PARSE_ERROR: u64 = 0x0FFF_FFFF_FFFF_FFFD;
    /// `MASK_ERROR | 0x0FFF_FFFF_FFFF_FFFF`: no such API call.
    pub const UNKNOWN_API_CALL: u64 = 0x0FFF_FFFF_FFFF_FFFF;
}

/// A `ret_code` under construction: type, operation, object and code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RetCode(u64);

impl RetCode {
    pub const fn new(bits: u64) -> Self {
        RetCode(bits)
    }
    pub const fn error(code: u64) -> Self {
        RetCode(mask::ERROR | code)
    }
    pub const fn warn(code: u64) -> Self {
        RetCode(mask::WARN | code)
    }
    pub const fn info(code: u64) -> Self {
        RetCode(mask::INFO | code)
    }
    pub const fn success(code: u64) -> Self {
        RetCode(code)
    }

    /// Adds the operation and object masks, as LINSTOR's response context does, unless the
    /// code already carries them.
    pub const fn with_context(self, op: u64, obj: u64) -> Self {
        let mut bits = self.0;
        if bits & mask::OP_BITS == 0 {
            bits |= op;
        }
        if bits & mask::OBJ_BITS == 0 {
            bits |= obj;
        }
        RetCode(bits)
    }

    pub const fn bits(self) -> u64 {
        self.0
    }
    /// The value as it goes on the wire: the same bits, read as a signed integer.
    pub const fn as_i64(self) -> i64 {
        self.0 as i64
    }
    pub const fn code(self) -> u64 {
        self.0 & mask::CODE_BITS
    }
    pub const fn is_error(self) -> bool {
        self.0 & mask::TYPE_BITS == mask::ERROR
    }
    pub const fn is_warning(self) -> bool {
        self.0 & mask::TYPE_BITS == mask::WARN
    }
    pub const fn is_info(self) -> bool {
        self.0 & mask::TYPE_BITS == mask::INFO
    }
}

/// One entry of an `ApiCallRcList`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApiCallRc {
    /// Bit-masked return code (signed 64-bit).
    pub ret_code: i64,
    /// What happened.
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correction: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_report_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub obj_refs: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}

impl ApiCallRc {
    pub fn new(ret_code: RetCode, message: impl Into<String>) -> Self {
        ApiCallRc {
            ret_code: ret_code.as_i64(),
            message: message.into(),
            cause: None,
            details: None,
            correction: None,
            error_report_ids: Vec::new(),
            obj_refs: BTreeMap::new(),
            created_at: None,
        }
    }

    pub fn cause(mut self, cause: impl Into<String>) -> Self {
        self.cause = Some(cause.into());
        self
    }

    pub fn details(mut self, details: impl Into<String>) -> Self {
        self.details = Some(details.into());
        self
    }

    pub fn correction(mut self, correction: impl Into<String>) -> Self {
        self.correction = Some(correction.into());
        self
    }

    pub fn obj_ref(mut self, kind: &str, name: impl Into<String>) -> Self {
        self.obj_refs.insert(kind.to_string(), name.into());
        self
    }

    pub fn error_report(mut self, id: impl Into<String>) -> Self {
        self.error_report_ids.push(id.into());
        self
    }

    pub fn ret_code(&self) -> RetCode {
        RetCode(self.ret_code as u64)
    }

    pub fn is_error(&self) -> bool {
        self.ret_code().is_error()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_linstor() {
        let created = RetCode::success(code::CREATED).with_context(mask::CRT, mask::NODE);
        assert_eq!(created.as_i64(), 20_709_377);
        let rsc_created = RetCode::success(code::CREATED).with_context(mask::CRT, mask::RSC);
        assert_eq!(rsc_created.as_i64(), 0x0134_0001);
        let exists = RetCode::error(code::FAIL_EXISTS_NODE).with_context(mask::CRT, mask::NODE);
        assert_eq!(exists.as_i64(), -4_611_686_018_406_678_028);
        assert_eq!(
            RetCode::error(code::FAIL_NOT_FOUND_RSC_GRP).as_i64(),
            -4_611_686_018_427_387_587
        );
    }

    #[test]
    fn classification_uses_the_type_bits() {
        assert!(RetCode::error(1).is_error());
        assert!(
            !RetCode::error(1).is_warning(),
            "error is not a warning although it shares bit 63"
        );
        assert!(RetCode::warn(1).is_warning());
        assert!(RetCode::info(1).is_info());
        let success = RetCode::success(code::CREATED);
        assert!(!success.is_error() && !success.is_warning() && !success.is_info());
    }

    #[test]
    fn context_does_not_override_explicit_bits() {
        let explicit = RetCode::error(code::FAIL_NOT_FOUND_NODE | mask::NODE | mask::DEL);
        let with = explicit.with_context(mask::CRT, mask::RSC);
        assert_eq!(with, explicit);
    }

    #[test]
    fn serializes_signed_and_skips_empty_fields() {
        let rc = ApiCallRc::new(
            RetCode::error(code::FAIL_NOT_FOUND_NODE),
            "Node 'x' not found.",
        )
        .obj_ref("Node", "x");
        let json = serde_json::to_value(&rc).unwrap();
        assert!(json["ret_code"].as_i64().unwrap() < 0);
        assert_eq!(json["obj_refs"]["Node"], "x");
        assert!(json.get("cause").is_none());
        assert!(json.get("error_report_ids").is_none());
    }
}
