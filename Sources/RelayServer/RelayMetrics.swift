import Prometheus
import RelayCore
import RelayStore
import Synchronization

/// The relay's metrics: counts and timings only, never content or identities.
final class RelayMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    private let requestCounters = Mutex<[String: Counter]>([:])
    private let keyHolderGauges = Mutex<[QueueName: Gauge]>([:])
    private let depthGauges = Mutex<[String: Gauge]>([:])
    let intakeLatency: DurationHistogram
    let batchSizes: ValueHistogram
    private let tlsHandshakeFailures: [HandshakeFailure: Counter]
    let receiptMissesRefused: Counter
    let requestsTimedOut: Counter
    let tlsCertificateExpiry: Gauge
    let tlsCAExpiry: Gauge
    let queuesWithoutSealingKey: Gauge
    let auditTrailBroken: Gauge
    let clientCertificatesEndingSoon: Gauge
    let clientCertificateSoonestEnd: Gauge
    let retentionPurged: Counter
    let retentionLastSweep: Gauge
    let slaNotifyFailures: Counter
    let storeCannotWrite: Gauge
    let storeFreeBytes: Gauge

    init() {
        intakeLatency = registry.makeDurationHistogram(
            descriptor: .init(namespace: "amane", metricName: "intake_duration", unitName: "seconds", helpText: "Time from request to durable commit of a disclosure"),
            labels: [("route", "/v1/disclosures")],
            buckets: [.milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
                      .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1)])
        batchSizes = registry.makeValueHistogram(
            descriptor: .init(namespace: "amane", metricName: "group_commit_batch", unitName: "writes", helpText: "Writes per group commit"),
            labels: [("store", "sqlite")], buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256])
        let registry = registry
        tlsHandshakeFailures = Dictionary(uniqueKeysWithValues: HandshakeFailure.allCases.map { reason in
            (reason, registry.makeCounter(
                descriptor: .init(namespace: "amane", metricName: "tls_handshake_failures", unitName: "total",
                                  helpText: "TLS handshakes that failed, by reason (no_certificate, certificate_refused, server_certificate_refused, not_tls, protocol, abandoned, other)"),
                labels: [("reason", reason.rawValue)]))
        })
        receiptMissesRefused = registry.makeCounter(
            descriptor: .init(namespace: "amane", metricName: "receipt_misses_refused", unitName: "total",
                              helpText: "Unknown receipts answered 429 past a gateway's limit: someone may be guessing receipts"))
        requestsTimedOut = registry.makeCounter(
            descriptor: .init(namespace: "amane", metricName: "requests_timed_out", unitName: "total",
                              helpText: "Requests whose body did not arrive within limits.requestBodySeconds (answered 408, or closed)"))
        tlsCertificateExpiry = registry.makeGauge(
            descriptor: .init(namespace: "amane", metricName: "tls_certificate_expiry", unitName: "timestamp_seconds",
                              helpText: "When the served TLS certificate expires, in Unix seconds"))
        tlsCAExpiry = registry.makeGauge(
            descriptor: .init(namespace: "amane", metricName: "tls_ca_expiry", unitName: "timestamp_seconds",
                              helpText: "When the relay's CA certificate (tls.caFile) ends, in Unix seconds: every certificate stops being trusted then"))
        queuesWithoutSealingKey = registry.makeGauge(
            descriptor: .init(namespace: "amane", metricName: "sealing_key_missing", unitName: "queues",
                              helpText: "Queues whose intake answers 503 until a member runs amane rotate: no key yet, or none that an active member holds"))
        auditTrailBroken = registry.makeGauge(
            descriptor: .init(namespace: "amane", metricName: "audit_trail_broken", unitName: "",
                              helpText: "1 while the audit trail's append-only triggers are missing or its last entry does not chain (checked at start and hourly)"))
        clientCertificatesEndingSoon = registry.makeGauge(
            descriptor: .init(namespace: "amane", metricName: "client_certificates_ending_soon", unitName: "",
                              helpText: "Active principals whose client certificate ends within 30 days, or has ended"))
        clientCertificateSoonestEnd = registry.makeGauge(
            descriptor: .init(namespace: "amane", metricName: "client_certificate_soonest_expiry", unitName: "timestamp_seconds",
                              helpText: "When the first active principal's client certificate ends, in Unix seconds; 0 when none has a recorded end"))
        retentionPurged = registry.makeCounter(
            descriptor: .init(namespace: "amane", metricName: "retention_purged_cases", unitName: "total",
                              helpText: "Cases purged by the retention sweep since start (envelopes and sealed objects removed, labels kept)"))
        retentionLastSweep = registry.makeGauge(
            descriptor: .init(namespace: "amane", metricName: "retention_last_sweep", unitName: "timestamp_seconds",
                              helpText: "When the retention sweep last finished, in Unix seconds"))
        storeCannotWrite = registry.makeGauge(
            descriptor: .init(namespace: "amane", metricName: "store_cannot_write", unitName: "",
                              helpText: "1 while the store cannot write (a full disk, an I/O error): nothing is acknowledged until it can"))
        storeFreeBytes = registry.makeGauge(
            descriptor: .init(namespace: "amane", metricName: "store_disk_free", unitName: "bytes",
                              helpText: "Free bytes on the data directory's disk; below room for two of the largest submissions /readyz fails"))
        slaNotifyFailures = registry.makeCounter(
            descriptor: .init(namespace: "amane", metricName: "sla_notify_failures", unitName: "total",
                              helpText: "Runs of sla.notifyCommand that failed to start, exited non-zero, were killed at the timeout, or were skipped while one still ran"))
    }

    /// The Prometheus text format, as /metrics serves it.
    var exposition: String { registry.emitToString() }

    func countHandshakeFailure(_ reason: HandshakeFailure) {
        tlsHandshakeFailures[reason]?.increment()
    }

    func countRequest(route: String, method: String, status: Int) {
        let key = "\(method) \(route) \(status)"
        let counter = requestCounters.withLock { counters in
            if let counter = counters[key] { return counter }
            let counter = registry.makeCounter(
                descriptor: .init(namespace: "amane", metricName: "http_requests", unitName: "total", helpText: "Requests by route and status"),
                labels: [("method", method), ("route", route), ("status", String(status))])
            counters[key] = counter
            return counter
        }
        counter.increment()
    }

    func update(keyHolders: [QueueName: Int]) {
        for (queue, holders) in keyHolders {
            let gauge = keyHolderGauges.withLock { gauges in
                if let gauge = gauges[queue] { return gauge }
                let gauge = registry.makeGauge(
                    descriptor: .init(namespace: "amane", metricName: "queue_key_holders", unitName: "",
                                      helpText: "Active members granted the queue's current key: below 2, one absence stops new cases being claimed"),
                    labels: [("queue", queue.rawValue)])
                gauges[queue] = gauge
                return gauge
            }
            gauge.set(Double(holders))
        }
    }

    /// The principals whose certificate ends within 30 days (or has ended), soonest first.
    @discardableResult
    func update(certificateEnds ends: [PrincipalName: Int64], now: Int64) -> [(key: PrincipalName, value: Int64)] {
        let soon = ends.filter { $0.value < now + 30 * 86_400 }.sorted { ($0.value, $0.key.rawValue) < ($1.value, $1.key.rawValue) }
        clientCertificatesEndingSoon.set(Double(soon.count))
        clientCertificateSoonestEnd.set(Double(ends.values.min() ?? 0))
        return soon
    }

    func update(depth: [QueueName: [Urgency: QueueDepth]]) {
        for (queue, urgencies) in depth {
            for (urgency, value) in urgencies {
                depthGauge("queue_depth", "Unclaimed cases by queue and urgency", queue, urgency).set(Double(value.waiting))
                depthGauge("sla_breaches", "Cases past their SLA by queue and urgency: unclaimed, or held with a reporter's follow-up its holder has not opened",
                           queue, urgency).set(Double(value.pastSLA))
            }
        }
    }

    private func depthGauge(_ name: String, _ help: String, _ queue: QueueName, _ urgency: Urgency) -> Gauge {
        depthGauges.withLock { gauges in
            let key = "\(name) \(queue.rawValue) \(urgency.rawValue)"
            if let gauge = gauges[key] { return gauge }
            let gauge = registry.makeGauge(descriptor: .init(namespace: "amane", metricName: name, unitName: "cases", helpText: help),
                                           labels: [("queue", queue.rawValue), ("urgency", urgency.rawValue)])
            gauges[key] = gauge
            return gauge
        }
    }
}
