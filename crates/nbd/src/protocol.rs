//! The NBD wire format: magic numbers, flags, option and command codes, and the pure encoders and
//! decoders of every message this server sends or receives (doc/proto.md of the NBD project).
//!
//! Nothing here does I/O or keeps state: the handshake ([`crate::handshake`]) and the
//! transmission phase ([`crate::transmission`]) read bytes from the socket and hand them to these
//! functions. Every decoder works on a slice whose length the caller already bounded, and fails
//! with a [`ProtocolError`] instead of panicking, whatever the bytes.

use bytes::{BufMut, Bytes};
use ferrite_block::{BLOCK_SIZE, IoError, MAX_REQUEST_BYTES, PipedData};

/// `NBDMAGIC`, the first 8 bytes the server sends.
pub const INIT_PASSWD: u64 = 0x4e42_444d_4147_4943;
/// `IHAVEOPT`: the newstyle magic, sent by the server after [`INIT_PASSWD`] and by the client
/// before every option.
pub const OPTION_MAGIC: u64 = 0x4948_4156_454F_5054;
/// The magic of every option reply.
pub const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// The magic of a transmission request.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// The magic of a simple reply.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

/// Handshake flags (server → client).
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
pub const FLAG_NO_ZEROES: u16 = 1 << 1;
/// What this server announces: fixed newstyle, and no zero padding after
/// `NBD_OPT_EXPORT_NAME` for a client that asks for it.
pub const HANDSHAKE_FLAGS: u16 = FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES;

/// Client flags (client → server).
pub const CLIENT_FLAG_FIXED_NEWSTYLE: u32 = 1 << 0;
pub const CLIENT_FLAG_NO_ZEROES: u32 = 1 << 1;
/// Every client flag this server knows; a client that sets another one is disconnected (the
/// spec says the server MUST drop it).
pub const KNOWN_CLIENT_FLAGS: u32 = CLIENT_FLAG_FIXED_NEWSTYLE | CLIENT_FLAG_NO_ZEROES;

/// Transmission flags (per export).
pub const TRANSMISSION_HAS_FLAGS: u16 = 1 << 0;
pub const TRANSMISSION_READ_ONLY: u16 = 1 << 1;
pub const TRANSMISSION_SEND_FLUSH: u16 = 1 << 2;
pub const TRANSMISSION_SEND_FUA: u16 = 1 << 3;
pub const TRANSMISSION_SEND_TRIM: u16 = 1 << 5;
pub const TRANSMISSION_SEND_WRITE_ZEROES: u16 = 1 << 6;
pub const TRANSMISSION_CAN_MULTI_CONN: u16 = 1 << 8;

/// Option codes.
pub const OPT_EXPORT_NAME: u32 = 1;
pub const OPT_ABORT: u32 = 2;
pub const OPT_LIST: u32 = 3;
pub const OPT_STARTTLS: u32 = 5;
pub const OPT_INFO: u32 = 6;
pub const OPT_GO: u32 = 7;
pub const OPT_STRUCTURED_REPLY: u32 = 8;
pub const OPT_LIST_META_CONTEXT: u32 = 9;
pub const OPT_SET_META_CONTEXT: u32 = 10;
pub const OPT_EXTENDED_HEADERS: u32 = 11;

/// Option reply types.
pub const REP_ACK: u32 = 1;
pub const REP_SERVER: u32 = 2;
pub const REP_INFO: u32 = 3;
pub const REP_ERROR: u32 = 1 << 31;
pub const REP_ERR_UNSUP: u32 = REP_ERROR | 1;
pub const REP_ERR_POLICY: u32 = REP_ERROR | 2;
pub const REP_ERR_INVALID: u32 = REP_ERROR | 3;
pub const REP_ERR_UNKNOWN: u32 = REP_ERROR | 6;
pub const REP_ERR_SHUTDOWN: u32 = REP_ERROR | 7;

/// Information types of `NBD_REP_INFO`.
pub const INFO_EXPORT: u16 = 0;
pub const INFO_NAME: u16 = 1;
pub const INFO_DESCRIPTION: u16 = 2;
pub const INFO_BLOCK_SIZE: u16 = 3;

/// Command types.
pub const CMD_READ: u16 = 0;
pub const CMD_WRITE: u16 = 1;
pub const CMD_DISC: u16 = 2;
pub const CMD_FLUSH: u16 = 3;
pub const CMD_TRIM: u16 = 4;
pub const CMD_WRITE_ZEROES: u16 = 6;

/// Command flags.
pub const CMD_FLAG_FUA: u16 = 1 << 0;
pub const CMD_FLAG_NO_HOLE: u16 = 1 << 1;

/// The size constraints every export advertises (`NBD_INFO_BLOCK_SIZE`): any byte is
/// addressable, 4 KiB requests are efficient, and a READ or WRITE carries at most
/// [`MAX_REQUEST_BYTES`].
pub const MINIMUM_BLOCK_SIZE: u32 = 1;
pub const PREFERRED_BLOCK_SIZE: u32 = BLOCK_SIZE;
pub const MAXIMUM_PAYLOAD: u32 = MAX_REQUEST_BYTES;

/// The longest option payload accepted during the handshake. The longest legitimate one is an
/// `NBD_OPT_GO` with a 4096-byte name (the spec's limit for strings) and a few information
/// requests; a longer one is refused by closing the connection, since skipping it would mean
/// reading up to 4 GiB from a client that is probably not speaking NBD.
pub const MAX_OPTION_BYTES: u32 = 16 * 1024;

/// The longest export name the spec allows.
pub const MAX_NAME_BYTES: usize = 4096;

/// Length of the server's greeting: magic, newstyle magic, handshake flags.
pub const GREETING_LEN: usize = 18;
/// Length of an option header: magic, option, length.
pub const OPTION_HEADER_LEN: usize = 16;
/// Length of a request header.
pub const REQUEST_HEADER_LEN: usize = 28;
/// Length of a simple reply header.
pub const SIMPLE_REPLY_LEN: usize = 16;

/// A violation of the protocol that ends the connection: the stream can no longer be trusted
/// to be framed as NBD.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("the client sent unknown client flags {0:#010x}")]
    UnknownClientFlags(u32),
    #[error("an option starts with {0:#018x} instead of IHAVEOPT")]
    BadOptionMagic(u64),
    #[error("option {option} carries {length} bytes, more than the {MAX_OPTION_BYTES} accepted")]
    OptionTooLong { option: u32, length: u32 },
    #[error("NBD_OPT_EXPORT_NAME asks for export {name:?}, which does not exist")]
    UnknownExport { name: String },
    #[error("NBD_OPT_EXPORT_NAME carries a name that is not a valid export name: {reason}")]
    BadExportName { reason: &'static str },
    #[error("a request starts with {0:#010x} instead of the request magic")]
    BadRequestMagic(u32),
    #[error(
        "a write of {length} bytes at offset {offset} exceeds the {MAX_REQUEST_BYTES}-byte maximum payload"
    )]
    WriteTooLarge { offset: u64, length: u32 },
}

/// The error values of a transmission reply (NBD's own numbering, not the host's errno).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ErrorCode {
    /// `NBD_EPERM`: a write, trim or write-zeroes on a read-only export (what the spec asks
    /// for; NBD has no `EROFS`), or a volume that refuses writes here.
    Permission = 1,
    /// `NBD_EIO`.
    Io = 5,
    /// `NBD_EINVAL`: unknown command or flag, a read or trim beyond the end of the export, a
    /// read longer than the maximum payload.
    Invalid = 22,
    /// `NBD_ENOSPC`: the backing store is full, or a write or write-zeroes beyond the end of
    /// the export (the spec's choice for those).
    NoSpace = 28,
    /// `NBD_ESHUTDOWN`: the export or the server is going away; the client must disconnect.
    Shutdown = 108,
}

impl From<&IoError> for ErrorCode {
    fn from(error: &IoError) -> ErrorCode {
        match error {
            IoError::ReadOnly(_) => ErrorCode::Permission,
            IoError::Io(_) => ErrorCode::Io,
            IoError::NoSpace(_) => ErrorCode::NoSpace,
            IoError::Invalid(_) => ErrorCode::Invalid,
            IoError::Shutdown => ErrorCode::Shutdown,
        }
    }
}

/// What the server sends first.
pub fn greeting() -> [u8; GREETING_LEN] {
    let mut out = [0u8; GREETING_LEN];
    out[0..8].copy_from_slice(&INIT_PASSWD.to_be_bytes());
    out[8..16].copy_from_slice(&OPTION_MAGIC.to_be_bytes());
    out[16..18].copy_from_slice(&HANDSHAKE_FLAGS.to_be_bytes());
    out
}

/// What the client chose in its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientFlags {
    pub fixed_newstyle: bool,
    pub no_zeroes: bool,
}

/// Decodes the client's 32-bit flags. Unknown bits end the connection (the spec's MUST).
/// `NO_ZEROES` is accepted because this server offers it.
pub fn decode_client_flags(bytes: [u8; 4]) -> Result<ClientFlags, ProtocolError> {
    let flags = u32::from_be_bytes(bytes);
    if flags & !KNOWN_CLIENT_FLAGS != 0 {
        return Err(ProtocolError::UnknownClientFlags(flags));
    }
    Ok(ClientFlags {
        fixed_newstyle: flags & CLIENT_FLAG_FIXED_NEWSTYLE != 0,
        no_zeroes: flags & CLIENT_FLAG_NO_ZEROES != 0,
    })
}

/// The header of one option the client sends during the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionHeader {
    pub option: u32,
    pub length: u32,
}

impl OptionHeader {
    /// Checks the magic and bounds the length to [`MAX_OPTION_BYTES`].
    pub fn decode(bytes: &[u8; OPTION_HEADER_LEN]) -> Result<OptionHeader, ProtocolError> {
        let magic = u64::from_be_bytes(bytes[0..8].try_into().expect("8 bytes"));
        if magic != OPTION_MAGIC {
            return Err(ProtocolError::BadOptionMagic(magic));
        }
        let option = u32::from_be_bytes(bytes[8..12].try_into().expect("4 bytes"));
        let length = u32::from_be_bytes(bytes[12..16].try_into().expect("4 bytes"));
        if length > MAX_OPTION_BYTES {
            return Err(ProtocolError::OptionTooLong { option, length });
        }
        Ok(OptionHeader { option, length })
    }
}

/// Appends one option reply to `out`.
pub fn put_option_reply(out: &mut Vec<u8>, option: u32, reply_type: u32, data: &[u8]) {
    let length = u32::try_from(data.len()).expect("option replies are small");
    out.put_u64(OPTION_REPLY_MAGIC);
    out.put_u32(option);
    out.put_u32(reply_type);
    out.put_u32(length);
    out.put_slice(data);
}

/// Appends an `NBD_REP_INFO` of type `NBD_INFO_EXPORT`.
pub fn put_info_export(out: &mut Vec<u8>, option: u32, size: u64, flags: u16) {
    let mut data = [0u8; 12];
    data[0..2].copy_from_slice(&INFO_EXPORT.to_be_bytes());
    data[2..10].copy_from_slice(&size.to_be_bytes());
    data[10..12].copy_from_slice(&flags.to_be_bytes());
    put_option_reply(out, option, REP_INFO, &data);
}

/// Appends an `NBD_REP_INFO` of type `NBD_INFO_BLOCK_SIZE` with this server's constraints.
pub fn put_info_block_size(out: &mut Vec<u8>, option: u32) {
    let mut data = [0u8; 14];
    data[0..2].copy_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
    data[2..6].copy_from_slice(&MINIMUM_BLOCK_SIZE.to_be_bytes());
    data[6..10].copy_from_slice(&PREFERRED_BLOCK_SIZE.to_be_bytes());
    data[10..14].copy_from_slice(&MAXIMUM_PAYLOAD.to_be_bytes());
    put_option_reply(out, option, REP_INFO, &data);
}

/// Appends an `NBD_REP_INFO` carrying a string (`NBD_INFO_NAME`, `NBD_INFO_DESCRIPTION`).
pub fn put_info_string(out: &mut Vec<u8>, option: u32, info: u16, text: &str) {
    let mut data = Vec::with_capacity(2 + text.len());
    data.put_u16(info);
    data.put_slice(text.as_bytes());
    put_option_reply(out, option, REP_INFO, &data);
}

/// Appends an `NBD_REP_SERVER` naming one export (the answer to `NBD_OPT_LIST`).
pub fn put_server_entry(out: &mut Vec<u8>, name: &str) {
    let mut data = Vec::with_capacity(4 + name.len());
    data.put_u32(u32::try_from(name.len()).expect("names are at most 4096 bytes"));
    data.put_slice(name.as_bytes());
    put_option_reply(out, OPT_LIST, REP_SERVER, &data);
}

/// The reply to `NBD_OPT_EXPORT_NAME`: size, flags and, unless the client asked for none, 124
/// zero bytes.
pub fn export_name_reply(size: u64, flags: u16, no_zeroes: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(10 + 124);
    out.put_u64(size);
    out.put_u16(flags);
    if !no_zeroes {
        out.put_bytes(0, 124);
    }
    out
}

/// The data of an `NBD_OPT_INFO` or `NBD_OPT_GO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoRequest<'a> {
    /// The export's name as sent (checked by the caller, who knows the exports).
    pub name: &'a [u8],
    /// The information types asked for, in the order sent.
    pub requests: Vec<u16>,
}

/// Decodes the data of `NBD_OPT_INFO`/`NBD_OPT_GO`; the error is the message of the
/// `NBD_REP_ERR_INVALID` the client gets.
pub fn decode_info_request(data: &[u8]) -> Result<InfoRequest<'_>, &'static str> {
    if data.len() < 6 {
        return Err("the option is shorter than a name length and a request count");
    }
    let name_length = u32::from_be_bytes(data[0..4].try_into().expect("4 bytes")) as usize;
    if name_length > data.len() - 6 {
        return Err("the name length reaches beyond the option");
    }
    let name = &data[4..4 + name_length];
    let rest = &data[4 + name_length..];
    let count = u16::from_be_bytes(rest[0..2].try_into().expect("2 bytes")) as usize;
    let list = &rest[2..];
    if list.len() != count * 2 {
        return Err("the number of information requests does not match the option's length");
    }
    let requests = list
        .chunks_exact(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
        .collect();
    Ok(InfoRequest { name, requests })
}

/// Checks an export name (or any string sent in the handshake) as the spec defines strings: UTF-8, no NUL, at most 4096 bytes.
pub fn check_name(name: &[u8]) -> Result<&str, &'static str> {
    if name.len() > MAX_NAME_BYTES {
        return Err("the name is longer than 4096 bytes");
    }
    let name = std::str::from_utf8(name).map_err(|_| "the name is not UTF-8")?;
    if name.contains('\0') {
        return Err("the name contains NUL");
    }
    Ok(name)
}

/// A transmission request header, decoded but not yet checked against the export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    pub flags: u16,
    pub command: u16,
    pub cookie: u64,
    pub offset: u64,
    pub length: u32,
}

impl RequestHeader {
    /// Checks the magic, and that a write's payload is at most [`MAX_REQUEST_BYTES`] (a
    /// longer one cannot be skipped cheaply, and the spec lets the server disconnect).
    pub fn decode(bytes: &[u8; REQUEST_HEADER_LEN]) -> Result<RequestHeader, ProtocolError> {
        let magic = u32::from_be_bytes(bytes[0..4].try_into().expect("4 bytes"));
        if magic != REQUEST_MAGIC {
            return Err(ProtocolError::BadRequestMagic(magic));
        }
        let header = RequestHeader {
            flags: u16::from_be_bytes(bytes[4..6].try_into().expect("2 bytes")),
            command: u16::from_be_bytes(bytes[6..8].try_into().expect("2 bytes")),
            cookie: u64::from_be_bytes(bytes[8..16].try_into().expect("8 bytes")),
            offset: u64::from_be_bytes(bytes[16..24].try_into().expect("8 bytes")),
            length: u32::from_be_bytes(bytes[24..28].try_into().expect("4 bytes")),
        };
        if header.command == CMD_WRITE && header.length > MAX_REQUEST_BYTES {
            return Err(ProtocolError::WriteTooLarge {
                offset: header.offset,
                length: header.length,
            });
        }
        Ok(header)
    }

    /// How many payload bytes follow the header on the wire: a write's data, nothing else.
    /// Whether the write is valid or not, those bytes must be read to stay in step.
    pub fn payload_length(&self) -> u32 {
        if self.command == CMD_WRITE {
            self.length
        } else {
            0
        }
    }

    pub fn encode(&self) -> [u8; REQUEST_HEADER_LEN] {
        let mut out = [0u8; REQUEST_HEADER_LEN];
        out[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        out[4..6].copy_from_slice(&self.flags.to_be_bytes());
        out[6..8].copy_from_slice(&self.command.to_be_bytes());
        out[8..16].copy_from_slice(&self.cookie.to_be_bytes());
        out[16..24].copy_from_slice(&self.offset.to_be_bytes());
        out[24..28].copy_from_slice(&self.length.to_be_bytes());
        out
    }
}

/// What a request asks of the volume, once checked against the export. Zero-length reads,
/// writes, trims and write-zeroes succeed without reaching the volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Read {
        offset: u64,
        length: u32,
    },
    /// The payload follows separately.
    Write {
        offset: u64,
        fua: bool,
    },
    Flush,
    Trim {
        offset: u64,
        length: u64,
        fua: bool,
    },
    /// `NBD_CMD_FLAG_NO_HOLE` needs nothing more: a volume's `write_zeroes` writes zeroes and
    /// never promises a hole.
    WriteZeroes {
        offset: u64,
        length: u64,
        fua: bool,
    },
    /// Succeeds at once (a zero-length request).
    Nothing,
    /// `NBD_CMD_DISC`: no reply; the connection ends once in-flight requests are answered.
    Disconnect,
}

/// Checks a request against an export of `size` bytes, read-only or not. `Err` is the error
/// of the reply; the connection goes on.
pub fn check_request(
    header: &RequestHeader,
    size: u64,
    read_only: bool,
) -> Result<Operation, ErrorCode> {
    let allowed_flags = match header.command {
        CMD_READ | CMD_WRITE | CMD_FLUSH | CMD_TRIM => CMD_FLAG_FUA,
        CMD_WRITE_ZEROES => CMD_FLAG_FUA | CMD_FLAG_NO_HOLE,
        CMD_DISC => u16::MAX,
        _ => return Err(ErrorCode::Invalid),
    };
    if header.flags & !allowed_flags != 0 {
        return Err(ErrorCode::Invalid);
    }
    let fua = header.flags & CMD_FLAG_FUA != 0;
    let length = u64::from(header.length);
    let offset = header.offset;
    let in_range = offset.checked_add(length).is_some_and(|end| end <= size);
    let writes = matches!(header.command, CMD_WRITE | CMD_TRIM | CMD_WRITE_ZEROES);
    if writes && read_only {
        return Err(ErrorCode::Permission);
    }
    match header.command {
        CMD_DISC => Ok(Operation::Disconnect),
        CMD_FLUSH => Ok(Operation::Flush),
        CMD_READ if header.length > MAXIMUM_PAYLOAD || !in_range => Err(ErrorCode::Invalid),
        CMD_TRIM if !in_range => Err(ErrorCode::Invalid),
        CMD_WRITE | CMD_WRITE_ZEROES if !in_range => Err(ErrorCode::NoSpace),
        _ if header.length == 0 => Ok(Operation::Nothing),
        CMD_READ => Ok(Operation::Read {
            offset,
            length: header.length,
        }),
        CMD_WRITE => Ok(Operation::Write { offset, fua }),
        CMD_TRIM => Ok(Operation::Trim {
            offset,
            length,
            fua,
        }),
        CMD_WRITE_ZEROES => Ok(Operation::WriteZeroes {
            offset,
            length,
            fua,
        }),
        _ => Err(ErrorCode::Invalid),
    }
}

/// A simple reply header: magic, error (0 for success), cookie.
pub fn simple_reply(error: Option<ErrorCode>, cookie: u64) -> [u8; SIMPLE_REPLY_LEN] {
    let mut out = [0u8; SIMPLE_REPLY_LEN];
    out[0..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    out[4..8].copy_from_slice(&error.map_or(0, |code| code as u32).to_be_bytes());
    out[8..16].copy_from_slice(&cookie.to_be_bytes());
    out
}

/// One reply ready for the socket: the header and, for a successful read, the data (shared or
/// in a pipe, never copied).
#[derive(Debug)]
pub struct Reply {
    pub header: [u8; SIMPLE_REPLY_LEN],
    pub data: ReplyData,
}

/// A reply's data.
#[derive(Debug)]
pub enum ReplyData {
    None,
    Bytes(Bytes),
    /// Page-cache pages in a pipe, copied out as the reply is sent.
    Piped(PipedData),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(command: u16, flags: u16, offset: u64, length: u32) -> RequestHeader {
        RequestHeader {
            flags,
            command,
            cookie: 0x0102_0304_0506_0708,
            offset,
            length,
        }
    }

    #[test]
    fn the_greeting_is_nbdmagic_ihaveopt_and_the_handshake_flags() {
        let greeting = greeting();
        assert_eq!(&greeting[0..8], b"NBDMAGIC");
        assert_eq!(&greeting[8..16], b"IHAVEOPT");
        assert_eq!(&greeting[16..18], &[0, 3]);
    }

    #[test]
    fn client_flags_beyond_fixed_newstyle_and_no_zeroes_are_refused() {
        assert_eq!(
            decode_client_flags([0, 0, 0, 3]),
            Ok(ClientFlags {
                fixed_newstyle: true,
                no_zeroes: true
            })
        );
        assert_eq!(
            decode_client_flags([0, 0, 0, 0]),
            Ok(ClientFlags {
                fixed_newstyle: false,
                no_zeroes: false
            })
        );
        assert_eq!(
            decode_client_flags([0, 0, 0, 4]),
            Err(ProtocolError::UnknownClientFlags(4))
        );
        assert_eq!(
            decode_client_flags([0x80, 0, 0, 1]),
            Err(ProtocolError::UnknownClientFlags(0x8000_0001))
        );
    }

    #[test]
    fn option_headers_need_the_magic_and_a_bounded_length() {
        let mut bytes = [0u8; 16];
        bytes[0..8].copy_from_slice(b"IHAVEOPT");
        bytes[8..12].copy_from_slice(&OPT_GO.to_be_bytes());
        bytes[12..16].copy_from_slice(&MAX_OPTION_BYTES.to_be_bytes());
        assert_eq!(
            OptionHeader::decode(&bytes),
            Ok(OptionHeader {
                option: OPT_GO,
                length: MAX_OPTION_BYTES
            })
        );
        bytes[12..16].copy_from_slice(&(MAX_OPTION_BYTES + 1).to_be_bytes());
        assert_eq!(
            OptionHeader::decode(&bytes),
            Err(ProtocolError::OptionTooLong {
                option: OPT_GO,
                length: MAX_OPTION_BYTES + 1
            })
        );
        bytes[0] = b'i';
        assert!(matches!(
            OptionHeader::decode(&bytes),
            Err(ProtocolError::BadOptionMagic(_))
        ));
    }

    #[test]
    fn option_replies_are_framed_with_magic_option_type_and_length() {
        let mut out = Vec::new();
        put_option_reply(&mut out, OPT_LIST, REP_ERR_UNSUP, b"no");
        assert_eq!(
            out,
            [
                &OPTION_REPLY_MAGIC.to_be_bytes()[..],
                &3u32.to_be_bytes(),
                &0x8000_0001u32.to_be_bytes(),
                &2u32.to_be_bytes(),
                b"no"
            ]
            .concat()
        );

        let mut out = Vec::new();
        put_info_export(&mut out, OPT_GO, 1 << 30, 0x14d);
        assert_eq!(&out[16..20], &12u32.to_be_bytes());
        assert_eq!(&out[20..22], &INFO_EXPORT.to_be_bytes());
        assert_eq!(&out[22..30], &(1u64 << 30).to_be_bytes());
        assert_eq!(&out[30..32], &0x14du16.to_be_bytes());

        let mut out = Vec::new();
        put_info_block_size(&mut out, OPT_INFO);
        assert_eq!(&out[16..20], &14u32.to_be_bytes());
        assert_eq!(
            &out[20..],
            &[0, 3, 0, 0, 0, 1, 0, 0, 0x10, 0, 2, 0, 0, 0][..]
        );

        let mut out = Vec::new();
        put_server_entry(&mut out, "vol0");
        assert_eq!(&out[12..16], &REP_SERVER.to_be_bytes());
        assert_eq!(&out[16..20], &8u32.to_be_bytes());
        assert_eq!(&out[20..], b"\0\0\0\x04vol0");
    }

    #[test]
    fn export_name_replies_pad_with_124_zeroes_unless_asked_not_to() {
        let padded = export_name_reply(4096, 0x0001, false);
        assert_eq!(padded.len(), 134);
        assert!(padded[10..].iter().all(|b| *b == 0));
        assert_eq!(export_name_reply(4096, 0x0001, true).len(), 10);
    }

    #[test]
    fn info_requests_decode_name_and_request_list_and_refuse_bad_lengths() {
        let data = [&4u32.to_be_bytes()[..], b"vol0", &[0, 2, 0, 3, 0, 1]].concat();
        assert_eq!(
            decode_info_request(&data),
            Ok(InfoRequest {
                name: b"vol0",
                requests: vec![INFO_BLOCK_SIZE, INFO_NAME]
            })
        );
        let empty = [0u8, 0, 0, 0, 0, 0];
        assert_eq!(
            decode_info_request(&empty),
            Ok(InfoRequest {
                name: b"",
                requests: vec![]
            })
        );
        assert!(decode_info_request(&[0, 0, 0, 0, 0]).is_err());
        assert!(decode_info_request(&[0, 0, 0, 1, 0, 0]).is_err());
        assert!(decode_info_request(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]).is_err());
        assert!(decode_info_request(&[0, 0, 0, 0, 0, 1]).is_err());
        assert!(decode_info_request(&[0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn names_are_utf8_without_nul_and_at_most_4096_bytes() {
        assert_eq!(check_name(b"vol0"), Ok("vol0"));
        assert_eq!(check_name(b""), Ok(""));
        assert!(check_name(b"a\0b").is_err());
        assert!(check_name(&[0xff]).is_err());
        assert!(check_name(&[b'a'; 4097]).is_err());
        assert!(check_name(&[b'a'; 4096]).is_ok());
    }

    #[test]
    fn request_headers_round_trip_and_bound_write_payloads() {
        let original = header(CMD_WRITE, CMD_FLAG_FUA, 8192, 4096);
        assert_eq!(RequestHeader::decode(&original.encode()), Ok(original));
        assert_eq!(original.payload_length(), 4096);
        assert_eq!(header(CMD_READ, 0, 0, 4096).payload_length(), 0);

        let largest = header(CMD_WRITE, 0, 0, MAX_REQUEST_BYTES);
        assert_eq!(RequestHeader::decode(&largest.encode()), Ok(largest));
        let too_large = header(CMD_WRITE, 0, 0, MAX_REQUEST_BYTES + 1);
        assert!(matches!(
            RequestHeader::decode(&too_large.encode()),
            Err(ProtocolError::WriteTooLarge { .. })
        ));
        // A read that long is answered with EINVAL instead: it has no payload to skip.
        let long_read = header(CMD_READ, 0, 0, u32::MAX);
        assert_eq!(RequestHeader::decode(&long_read.encode()), Ok(long_read));

        let mut bad = original.encode();
        bad[0] ^= 1;
        assert!(matches!(
            RequestHeader::decode(&bad),
            Err(ProtocolError::BadRequestMagic(_))
        ));
    }

    #[test]
    fn requests_are_checked_against_size_flags_and_read_only() {
        let size = 1 << 20;
        let check = |h: RequestHeader| check_request(&h, size, false);
        assert_eq!(
            check(header(CMD_READ, 0, 0, 4096)),
            Ok(Operation::Read {
                offset: 0,
                length: 4096
            })
        );
        assert_eq!(
            check(header(CMD_READ, CMD_FLAG_FUA, 4096, 4096)),
            Ok(Operation::Read {
                offset: 4096,
                length: 4096
            })
        );
        assert_eq!(
            check(header(CMD_WRITE, CMD_FLAG_FUA, size - 1, 1)),
            Ok(Operation::Write {
                offset: size - 1,
                fua: true
            })
        );
        assert_eq!(
            check(header(
                CMD_WRITE_ZEROES,
                CMD_FLAG_NO_HOLE | CMD_FLAG_FUA,
                0,
                512
            )),
            Ok(Operation::WriteZeroes {
                offset: 0,
                length: 512,
                fua: true
            })
        );
        assert_eq!(
            check(header(CMD_TRIM, 0, 0, 512)),
            Ok(Operation::Trim {
                offset: 0,
                length: 512,
                fua: false
            })
        );
        assert_eq!(check(header(CMD_FLUSH, 0, 0, 0)), Ok(Operation::Flush));
        assert_eq!(check(header(CMD_DISC, 0, 0, 0)), Ok(Operation::Disconnect));
        assert_eq!(check(header(CMD_READ, 0, size, 0)), Ok(Operation::Nothing));

        // Out of range: EINVAL for read and trim, ENOSPC for writes, as the spec asks.
        assert_eq!(check(header(CMD_READ, 0, size, 1)), Err(ErrorCode::Invalid));
        assert_eq!(
            check(header(CMD_READ, 0, u64::MAX, 2)),
            Err(ErrorCode::Invalid)
        );
        assert_eq!(
            check(header(CMD_TRIM, 0, size - 1, 2)),
            Err(ErrorCode::Invalid)
        );
        assert_eq!(
            check(header(CMD_WRITE, 0, size - 1, 2)),
            Err(ErrorCode::NoSpace)
        );
        assert_eq!(
            check(header(CMD_WRITE_ZEROES, 0, size, 1)),
            Err(ErrorCode::NoSpace)
        );
        // Longer than the maximum payload.
        assert_eq!(
            check_request(
                &header(CMD_READ, 0, 0, MAXIMUM_PAYLOAD + 1),
                u64::MAX,
                false
            ),
            Err(ErrorCode::Invalid)
        );
        // Flags that do not belong to the command, unknown commands.
        assert_eq!(
            check(header(CMD_WRITE, CMD_FLAG_NO_HOLE, 0, 1)),
            Err(ErrorCode::Invalid)
        );
        assert_eq!(
            check(header(CMD_READ, 1 << 2, 0, 1)),
            Err(ErrorCode::Invalid)
        );
        assert_eq!(check(header(5, 0, 0, 1)), Err(ErrorCode::Invalid));
        assert_eq!(check(header(7, 0, 0, 1)), Err(ErrorCode::Invalid));
        assert_eq!(check(header(0xffff, 0, 0, 1)), Err(ErrorCode::Invalid));

        // Read-only: EPERM for anything that writes, reads still work.
        for command in [CMD_WRITE, CMD_TRIM, CMD_WRITE_ZEROES] {
            assert_eq!(
                check_request(&header(command, 0, 0, 1), size, true),
                Err(ErrorCode::Permission)
            );
        }
        assert!(check_request(&header(CMD_READ, 0, 0, 1), size, true).is_ok());
        assert!(check_request(&header(CMD_FLUSH, 0, 0, 0), size, true).is_ok());
    }

    #[test]
    fn volume_errors_map_to_nbd_error_values() {
        let cases = [
            (IoError::ReadOnly("peer is primary".into()), 1),
            (IoError::Io("disk".into()), 5),
            (IoError::Invalid("range".into()), 22),
            (IoError::NoSpace("full".into()), 28),
            (IoError::Shutdown, 108),
        ];
        for (error, code) in cases {
            assert_eq!(ErrorCode::from(&error) as u32, code, "{error}");
        }
    }

    #[test]
    fn simple_replies_carry_magic_error_and_cookie() {
        let reply = simple_reply(Some(ErrorCode::Shutdown), 42);
        assert_eq!(&reply[0..4], &SIMPLE_REPLY_MAGIC.to_be_bytes());
        assert_eq!(&reply[4..8], &108u32.to_be_bytes());
        assert_eq!(&reply[8..16], &42u64.to_be_bytes());
        assert_eq!(&simple_reply(None, 1)[4..8], &[0, 0, 0, 0]);
    }
}
