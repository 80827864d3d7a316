public import Foundation

extension UUID {
    /// A version 7 UUID whose 48-bit time field holds only the minute (its milliseconds are zero), then
    /// random bits: ids sort by minute, and an id does not pin a visit to a kiosk to the second.
    public static func v7(now: Date = Date()) -> UUID {
        let millis = UInt64(max(0, now.unixMinute)) * 1000
        var bytes = withUnsafeBytes(of: UUID().uuid) { Array($0) }
        for index in 0..<6 { bytes[index] = UInt8((millis >> (8 * (5 - UInt64(index)))) & 0xff) }
        bytes[6] = 0x70 | (bytes[6] & 0x0f)
        bytes[8] = 0x80 | (bytes[8] & 0x3f)
        return UUID(uuid: (bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                           bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]))
    }

    /// Whether this is a version 7 UUID of the RFC 9562 variant.
    public var isVersion7: Bool { uuid.6 >> 4 == 7 && uuid.8 >> 6 == 0b10 }

    /// Whether this is a version 7 UUID that carries only the minute, as `v7` makes them.
    public var isMinuteVersion7: Bool {
        let millis = withUnsafeBytes(of: uuid) { bytes in bytes.prefix(6).reduce(UInt64(0)) { $0 << 8 | UInt64($1) } }
        return isVersion7 && millis % 60_000 == 0
    }
}

extension Date {
    /// Unix seconds rounded down to the minute: the only precision the relay stores for case times.
    public var unixMinute: Int64 { Int64(timeIntervalSince1970 / 60) * 60 }
}
