import ArgumentParser
import RelayAPI
import RelayCore

/// `amane-relayd openapi`: the API document without a relay or a certificate, for whoever writes a gateway.
struct PrintOpenAPI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "openapi",
        abstract: "Print the API's OpenAPI 3.1 document, as the relay serves it to enrolled clients at /v1/openapi.yaml.",
        discussion: "Example: amane-relayd openapi > amane-relay-api.yaml")

    func run() { print(OpenAPIDocument.yaml, terminator: "") }
}

/// The OpenAPI 3.1 description of API v1, served at `/v1/openapi.yaml`.
/// A test keeps it exact against the router and the authorization table.
enum OpenAPIDocument {
    static let yaml = #"""
openapi: 3.1.0
info:
  title: Amane Relay API
  version: "1"
  description: >-
    The relay between helpline gateways and responders. Every call needs a client certificate
    issued by the relay's CA (mutual TLS 1.3); the certificate's key maps to a principal whose
    role decides what it may call. Without one the TLS handshake fails and no HTTP answer comes (under TLS 1.3
    the alert arrives at the first read, after the request was sent): it is a refusal, not a lost answer. Errors are application/problem+json (RFC 9457). Every answer to a request
    the relay read carries a Request-Id header, which its log names too: quote it when reporting a problem (the
    refusals of malformed HTTP below, 400, 431, 501 and 408, come before a request exists and carry none).
    Any call that writes may also answer 503 with Retry-After when the store is saturated or its
    disk is full; nothing of that call was stored, and it is safe to retry (a follow-up under the same
    Idempotency-Key). POST /v1/disclosures, which also answers it (no_sealing_key) while the queue has no key that an active member holds, lists it; a follow-up answers it then too. Both answer 429 storage_quota_exceeded past the gateway's bytes for the day (limits.gatewayBytesPerDay). Bodies are JSON in UTF-8 without a byte order mark, with no field
    the schema does not name, not even as null (an optional field it names may be null, which counts as absent; a required one may not), no key twice in one object, nested at most 32 deep
    and holding at most 1,000 values (else 400); outside the top-level `sealed` fields, a body holds
    at most limits.maxBodyBytes (256 KiB by default; else 413), and a sealed envelope at most
    limits.maxEnvelopeBytes (8 MiB by default; else 413). They are sent as application/json (one Content-Type), with no charset but UTF-8 and without a Content-Encoding (else 415). A request that is not valid HTTP answers 400 (so
    does an HTTP/1.1 request without exactly one Host, with an Upgrade header, or a CONNECT, whose answer has no body), one in a transfer coding other than chunked 501, one whose
    headers are too large 431, one whose body has not arrived in full within the relay's
    limits.requestBodySeconds (30 by default) of its head 408, and the connection is closed. A refusal sent before its
    body arrived (429, 403, 413) keeps the connection when the body declared a Content-Length of at most 1 MiB (the rest
    is read and dropped); a larger or chunked one is closed after it, and says Connection: close. A path
    called with a method it does not take answers 405 with Allow (HEAD included); an unknown path 404. A problem's
    `code` says which cause it is; a client programs against it, not against `detail`. A connection silent for
    limits.idleTimeoutSeconds (30 by default) is closed: open another, and retry a write under its Idempotency-Key.
    Sealed envelopes (`sealed` fields: gateway-sealed submissions, replies sealed to a gateway's key)
    follow the envelope format specified in the relay's source, Sources/RelayFormat/RelayFormat.docc/Envelope.md
    (header, HPKE suites, chunked payload, test vectors); `amane submit --seal` and `amane replies` implement it.
servers:
  - url: https://localhost:8443
paths:
  /v1/disclosures:
    post:
      summary: Submit a disclosure (plaintext content is sealed at once; or a gateway-sealed envelope)
      description: "Roles: gateway."
      parameters:
        - name: Idempotency-Key
          in: header
          required: true
          description: 32 to 128 visible ASCII characters, random (a UUIDv4 will do); a retry with the same key within seven days gets the same answer. A retry is the same request when its JSON says the same (the order of keys and spacing aside); anything else under that key answers 409. Keys are the gateway's own, shared by its disclosures and follow-ups; another gateway's same key is another request.
          schema: {type: string, minLength: 32, maxLength: 128, pattern: '^[!-~]+$'}
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: '#/components/schemas/DisclosureSubmission'}
      responses:
        "201":
          description: Created
          content:
            application/json:
              schema: {$ref: '#/components/schemas/DisclosureReceipt'}
        "400":
          $ref: '#/components/responses/P400'
        "403":
          $ref: '#/components/responses/P403'
        "409":
          $ref: '#/components/responses/P409'
        "413":
          $ref: '#/components/responses/P413'
        "415":
          $ref: '#/components/responses/P415'
        "429":
          $ref: '#/components/responses/P429'
        "503":
          $ref: '#/components/responses/P503'
  /v1/followups:
    post:
      summary: Add a reporter's follow-up by receipt
      description: "Roles: gateway. A follow-up is sealed bound to its case. Send `content` and the relay seals it; or seal it yourself (`amane followup --seal`, or `amane`'s format) to the queue's sealing key, bound to the `caseId` that POST /v1/replies/fetch returns for the receipt, and send `id` and `sealed`. A receipt whose check digit fails answers 400. Lookups that find nothing are held to 10 a minute per gateway by default; past that every lookup answers 429 (receipt_lookups_limited) until the pace allows, and one that names a case does not count. A receipt that names none of this gateway's cases answers 404 within the gateway's limit of unknown receipts (20 an hour by default) and 429 with Retry-After past it (unknown_receipts_limited); one that names one of its cases is answered then too."
      parameters:
        - name: Idempotency-Key
          in: header
          required: true
          description: 32 to 128 visible ASCII characters, random (a UUIDv4 will do); a retry with the same key within seven days gets the first follow-up's id and time, and nothing more is stored, if it has the same content and urgency or, sealed, the same receipt, contentTag (else id) and urgency
          schema: {type: string, minLength: 32, maxLength: 128, pattern: '^[!-~]+$'}
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: '#/components/schemas/FollowupSubmission'}
      responses:
        "201":
          description: Created
          content:
            application/json:
              schema: {$ref: '#/components/schemas/FollowupAccepted'}
        "400":
          $ref: '#/components/responses/P400'
        "403":
          $ref: '#/components/responses/P403'
        "404":
          $ref: '#/components/responses/P404'
        "409":
          $ref: '#/components/responses/P409'
        "413":
          $ref: '#/components/responses/P413'
        "415":
          $ref: '#/components/responses/P415'
        "429":
          $ref: '#/components/responses/P429'
        "503":
          $ref: '#/components/responses/P503'
  /v1/replies/fetch:
    post:
      summary: Fetch the replies for a receipt, sealed to this gateway
      description: "Roles: gateway. A receipt whose check digit fails answers 400. Lookups that find nothing are held to 10 a minute per gateway by default; past that every lookup answers 429 (receipt_lookups_limited) until the pace allows, and one that names a case does not count. A receipt that names none of this gateway's cases answers 404 within the gateway's limit of unknown receipts (20 an hour by default) and 429 with Retry-After past it (unknown_receipts_limited); one that names one of its cases is answered then too."
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: '#/components/schemas/ReplyFetch'}
      responses:
        "200":
          description: OK
          content:
            application/json:
              schema: {$ref: '#/components/schemas/ReplyList'}
        "400":
          $ref: '#/components/responses/P400'
        "403":
          $ref: '#/components/responses/P403'
        "404":
          $ref: '#/components/responses/P404'
        "413":
          $ref: '#/components/responses/P413'
        "415":
          $ref: '#/components/responses/P415'
        "429":
          $ref: '#/components/responses/P429'
  /v1/queues/{queue}/sealing-key:
    get:
      summary: The queue's current epoch public key
      description: "Roles: gateway."
      parameters:
        - name: queue
          in: path
          required: true
          description: The queue name
          schema: {type: string}
      responses:
        "200":
          description: OK
          content:
            application/json:
              schema: {$ref: '#/components/schemas/SealingKeyInfo'}
        "403":
          $ref: '#/components/responses/P403'
        "404":
          $ref: '#/components/responses/P404'
        "429":
          $ref: '#/components/responses/P429'
        "503":
          $ref: '#/components/responses/P503'
  /v1/queue:
    get:
      summary: List cases, urgent first then oldest, by cursor
      description: "Roles: responder, supervisor."
      parameters:
        - name: state
          in: query
          required: false
          description: repeatable
          schema: {type: string, enum: [\#(CaseState.allCases.map(\.rawValue).joined(separator: ", "))]}
        - name: urgency
          in: query
          required: false
          schema: {type: string, enum: [\#(Urgency.allCases.map(\.rawValue).joined(separator: ", "))]}
        - name: category
          in: query
          required: false
          description: a category code
          schema: {type: string}
        - name: mine
          in: query
          required: false
          description: true for cases assigned to the caller
          schema: {type: string}
        - name: overdue
          in: query
          required: false
          description: true for cases past their SLA (see slaDueAt), what a page from sla.notifyCommand asks about
          schema: {type: string}
        - name: idMatch
          in: query
          required: false
          description: 4 to 36 hex digits that a case id starts or ends with, such as the short id amane shows
          schema: {type: string}
        - name: cursor
          in: query
          required: false
          description: the next token of the previous page
          schema: {type: string}
        - name: limit
          in: query
          required: false
          description: 1 to 500, default 50
          schema: {type: string}
      responses:
        "200":
          description: OK
          content:
            application/json:
              schema: {$ref: '#/components/schemas/QueueListing'}
        "400":
          $ref: '#/components/responses/P400'
        "403":
          $ref: '#/components/responses/P403'
        "429":
          $ref: '#/components/responses/P429'
  /v1/disclosures/{id}:
    get:
      summary: Every sealed object of a case (audited as a fetch)
      description: "Roles: responder, supervisor."
      parameters:
        - name: id
          in: path
          required: true
          description: The case id (a UUIDv7)
          schema: {type: string}
      responses:
        "200":
          description: OK
          content:
            application/json:
              schema: {$ref: '#/components/schemas/CaseFile'}
        "403":
          $ref: '#/components/responses/P403'
        "404":
          $ref: '#/components/responses/P404'
        "429":
          $ref: '#/components/responses/P429'
  /v1/disclosures/{id}/claim:
    post:
      summary: Claim a case (a lease)
      description: "Roles: responder, supervisor. Claiming a case you already hold renews the lease."
      parameters:
        - name: id
          in: path
          required: true
          description: The case id (a UUIDv7)
          schema: {type: string}
      responses:
        "200":
          description: OK
          content:
            application/json:
              schema: {$ref: '#/components/schemas/CaseView'}
        "403":
          $ref: '#/components/responses/P403'
        "404":
          $ref: '#/components/responses/P404'
        "409":
          $ref: '#/components/responses/P409'
        "429":
          $ref: '#/components/responses/P429'
  /v1/disclosures/{id}/release:
    post:
      summary: Release a claimed case
      description: "Roles: responder, supervisor."
      parameters:
        - name: id
          in: path
          required: true
          description: The case id (a UUIDv7)
          schema: {type: string}
      responses:
        "200":
          description: OK
          content:
            application/json:
              schema: {$ref: '#/components/schemas/CaseView'}
        "403":
          $ref: '#/components/responses/P403'
        "404":
          $ref: '#/components/responses/P404'
        "409":
          $ref: '#/components/responses/P409'
        "429":
          $ref: '#/components/responses/P429'
  /v1/disclosures/{id}/transition:
    post:
      summary: Start, refer, close or (supervisor) reopen a case
      description: "Roles: responder, supervisor."
      parameters:
        - name: id
          in: path
          required: true
          description: The case id (a UUIDv7)
          schema: {type: string}
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: '#/components/schemas/TransitionRequest'}
      responses:
        "200":
          description: OK
          content:
            application/json:
              schema: {$ref: '#/components/schemas/CaseView'}
        "400":
          $ref: '#/components/responses/P400'
        "403":
          $ref: '#/components/responses/P403'
        "404":
          $ref: '#/components/responses/P404'
        "409":
          $ref: '#/components/responses/P409'
        "413":
          $ref: '#/components/responses/P413'
        "415":
          $ref: '#/components/responses/P415'
        "429":
          $ref: '#/components/responses/P429'
  /v1/disclosures/{id}/notes:
    post:
      summary: Add a note sealed to the queue epoch
      description: "Roles: responder, supervisor."
      parameters:
        - name: id
          in: path
          required: true
          description: The case id (a UUIDv7)
          schema: {type: string}
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: '#/components/schemas/NoteSubmission'}
      responses:
        "201":
          description: Created
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Accepted'}
        "400":
          $ref: '#/components/responses/P400'
        "403":
          $ref: '#/components/responses/P403'
        "404":
          $ref: '#/components/responses/P404'
        "409":
          $ref: '#/components/responses/P409'
        "413":
          $ref: '#/components/responses/P413'
        "415":
          $ref: '#/components/responses/P415'
        "429":
          $ref: '#/components/responses/P429'
  /v1/disclosures/{id}/replies:
    post:
      summary: "Add a reply: a copy sealed to the gateway and one to the epoch"
      description: "Roles: responder, supervisor. 409 when the case's gateway is revoked: it can fetch no reply (add a note instead)."
      parameters:
        - name: id
          in: path
          required: true
          description: The case id (a UUIDv7)
          schema: {type: string}
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: '#/components/schemas/ReplySubmission'}
      responses:
        "201":
          description: Created
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Accepted'}
        "400":
          $ref: '#/components/responses/P400'
        "403":
          $ref: '#/components/responses/P403'
        "404":
          $ref: '#/components/responses/P404'
        "409":
          $ref: '#/components/responses/P409'
        "413":
          $ref: '#/components/responses/P413'
        "415":
          $ref: '#/components/responses/P415'
        "429":
          $ref: '#/components/responses/P429'
  /v1/disclosures/{id}/reply-key:
    get:
      summary: The key a reply to the case is sealed to (its gateway's), besides the queue's epoch
      description: "Roles: responder, supervisor. Ask it before the reply is written: it refuses as the reply would (a responder must hold the case; 409 when the case's gateway is revoked, as it can fetch no reply), and opens nothing."
      parameters:
        - name: id
          in: path
          required: true
          description: The case id (a UUIDv7)
          schema: {type: string}
      responses:
        "200":
          description: OK
          content:
            application/json:
              schema: {$ref: '#/components/schemas/ReplyKey'}
        "403":
          $ref: '#/components/responses/P403'
        "404":
          $ref: '#/components/responses/P404'
        "409":
          $ref: '#/components/responses/P409'
        "429":
          $ref: '#/components/responses/P429'
  /v1/disclosures/{id}/assign:
    post:
      summary: Assign a case to a member
      description: "Roles: supervisor."
      parameters:
        - name: id
          in: path
          required: true
          description: The case id (a UUIDv7)
          schema: {type: string}
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: '#/components/schemas/AssignRequest'}
      responses:
        "200":
          description: OK
          content:
            application/json:
              schema: {$ref: '#/components/schemas/CaseView'}
        "400":
          $ref: '#/components/responses/P400'
        "403":
          $ref: '#/components/responses/P403'
        "404":
          $ref: '#/components/responses/P404'
        "409":
          $ref: '#/components/responses/P409'
        "413":
          $ref: '#/components/responses/P413'
        "415":
          $ref: '#/components/responses/P415'
        "429":
          $ref: '#/components/responses/P429'
  /v1/disclosures/{id}/hold:
    post:
      summary: Set or lift a hold (blocks purging)
      description: "Roles: supervisor."
      parameters:
        - name: id
          in: path
          required: true
          description: The case id (a UUIDv7)
          schema: {type: string}
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: '#/components/schemas/HoldRequest'}
      responses:
        "200":
          description: OK
          content:
            application/json:
              schema: {$ref: '#/components/schemas/CaseView'}
        "400":
          $ref: '#/components/responses/P400'
        "403":
          $ref: '#/components/responses/P403'
        "404":
          $ref: '#/components/responses/P404'
        "409":
          $ref: '#/components/responses/P409'
        "413":
          $ref: '#/components/responses/P413'
        "415":
          $ref: '#/components/responses/P415'
        "429":
          $ref: '#/components/responses/P429'
  /v1/grants:
    get:
      summary: The epoch keys sealed to the caller
      description: "Roles: responder, supervisor."
      responses:
        "200":
          description: OK
          content:
            application/json:
              schema: {$ref: '#/components/schemas/GrantList'}
        "403":
          $ref: '#/components/responses/P403'
        "429":
          $ref: '#/components/responses/P429'
    post:
      summary: Upload grants of an epoch the caller holds
      description: "Roles: responder, supervisor. A grant a member holds already is kept, and named in `kept`, unless a supervisor sends the new one: the relay cannot tell whether a grant opens."
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: '#/components/schemas/GrantUpload'}
      responses:
        "201":
          description: Created
          content:
            application/json:
              schema: {$ref: '#/components/schemas/GrantsStored'}
        "400":
          $ref: '#/components/responses/P400'
        "403":
          $ref: '#/components/responses/P403'
        "404":
          $ref: '#/components/responses/P404'
        "413":
          $ref: '#/components/responses/P413'
        "415":
          $ref: '#/components/responses/P415'
        "429":
          $ref: '#/components/responses/P429'
  /v1/epochs:
    post:
      summary: Create a new epoch (rotation) with its grants
      description: "Roles: responder, supervisor."
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: '#/components/schemas/EpochCreation'}
      responses:
        "201":
          description: Created
          content:
            application/json:
              schema: {$ref: '#/components/schemas/EpochView'}
        "400":
          $ref: '#/components/responses/P400'
        "403":
          $ref: '#/components/responses/P403'
        "409":
          $ref: '#/components/responses/P409'
        "413":
          $ref: '#/components/responses/P413'
        "415":
          $ref: '#/components/responses/P415'
        "429":
          $ref: '#/components/responses/P429'
  /v1/members:
    get:
      summary: Active members and their sealing keys
      description: "Roles: responder, supervisor."
      responses:
        "200":
          description: OK
          content:
            application/json:
              schema: {$ref: '#/components/schemas/MemberList'}
        "403":
          $ref: '#/components/responses/P403'
        "429":
          $ref: '#/components/responses/P429'
  /v1/stats:
    get:
      summary: Case counts by one label
      description: "Roles: responder, supervisor. Counts the cases of the caller's queue."
      parameters:
        - name: by
          in: query
          required: false
          description: month, category, urgency, channel, region, outcome, language or referral
          schema: {type: string}
        - name: from
          in: query
          required: false
          description: Count only cases received in this month (YYYY-MM, UTC) or later.
          schema: {type: string, pattern: '^[0-9]{4}-[0-9]{2}$'}
        - name: to
          in: query
          required: false
          description: Count only cases received in this month (YYYY-MM, UTC) or earlier.
          schema: {type: string, pattern: '^[0-9]{4}-[0-9]{2}$'}
      responses:
        "200":
          description: OK
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Statistics'}
        "400":
          $ref: '#/components/responses/P400'
        "403":
          $ref: '#/components/responses/P403'
        "429":
          $ref: '#/components/responses/P429'
  /v1/audit:
    get:
      summary: A page of the audit trail
      description: "Roles: supervisor. The trail is one chain for the whole relay: entries about another queue's cases, members, keys or the queue itself are withheld."
      parameters:
        - name: after
          in: query
          required: false
          description: the last seq already seen
          schema: {type: string}
        - name: limit
          in: query
          required: false
          description: 1 to 1000, default 500
          schema: {type: string}
      responses:
        "200":
          description: OK
          content:
            application/json:
              schema: {$ref: '#/components/schemas/AuditPage'}
        "400":
          $ref: '#/components/responses/P400'
        "403":
          $ref: '#/components/responses/P403'
        "429":
          $ref: '#/components/responses/P429'
  /v1/me:
    get:
      summary: Who the relay takes the caller for
      description: "Roles: gateway, responder, supervisor."
      responses:
        "200":
          description: OK
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Identity'}
        "403":
          $ref: '#/components/responses/P403'
        "429":
          $ref: '#/components/responses/P429'
  /v1/taxonomy:
    get:
      summary: The codes each label field takes, with French, Arabic and English labels, in the order to show them
      description: "Roles: gateway, responder, supervisor."
      responses:
        "200":
          description: OK
          content:
            application/json:
              schema: {$ref: '#/components/schemas/TaxonomyListing'}
        "403":
          $ref: '#/components/responses/P403'
        "429":
          $ref: '#/components/responses/P429'
  /v1/openapi.yaml:
    get:
      summary: This document
      description: "Roles: gateway, responder, supervisor."
      responses:
        "200":
          description: OK
          content:
            application/yaml: {}
        "403":
          $ref: '#/components/responses/P403'
        "429":
          $ref: '#/components/responses/P429'
components:
  responses:
    P400:
      description: Bad request
      content:
        application/problem+json:
          schema: {$ref: '#/components/schemas/Problem'}
    P403:
      description: Forbidden
      content:
        application/problem+json:
          schema: {$ref: '#/components/schemas/Problem'}
    P404:
      description: Not found
      content:
        application/problem+json:
          schema: {$ref: '#/components/schemas/Problem'}
    P409:
      description: Conflict
      content:
        application/problem+json:
          schema: {$ref: '#/components/schemas/Problem'}
    P413:
      description: Content too large
      content:
        application/problem+json:
          schema: {$ref: '#/components/schemas/Problem'}
    P415:
      description: Unsupported media type
      content:
        application/problem+json:
          schema: {$ref: '#/components/schemas/Problem'}
    P429:
      description: Too many requests
      headers:
        Retry-After:
          schema: {type: integer}
      content:
        application/problem+json:
          schema: {$ref: '#/components/schemas/Problem'}
    P503:
      description: Service unavailable
      headers:
        Retry-After:
          schema: {type: integer}
      content:
        application/problem+json:
          schema: {$ref: '#/components/schemas/Problem'}
  schemas:
    Problem:
      type: object
      required: [type, title, status, code]
      properties:
        type: {type: string}
        title: {type: string}
        status: {type: integer}
        detail: {type: string, description: For people; its wording may change.}
        code:
          type: string
          description: "What a client programs against; a newer relay may add codes. \#(ProblemCode.allCases.map { "`\($0.rawValue)` (\($0.status)): \($0.meaning)" }.joined(separator: ". "))."
          enum: [\#(ProblemCode.allCases.map(\.rawValue).joined(separator: ", "))]
    Content:
      type: object
      required: [narrative]
      properties:
        narrative: {type: string, description: "What the reporter told: 1 to limits.narrativeMaxBytes (65,536 by default) bytes of UTF-8, not only white space or invisible characters; longer answers 413 (too_large). Sealed content is held to the same limits by the gateway that seals it (see SealingKeyInfo)."}
        answers:
          type: object
          description: A gateway's questions and their answers, each one string or a list of strings.
          additionalProperties: {oneOf: [{type: string}, {type: array, items: {type: string}}]}
    DisclosureSubmission:
      type: object
      description: The labels, and exactly one of content and sealed.
      required: [urgency, category, language, channel]
      properties:
        queue: {type: string, description: "Default: the gateway's own queue, the only one it submits to (another answers 400)."}
        urgency: {type: string, enum: [\#(Urgency.allCases.map(\.rawValue).joined(separator: ", "))]}
        category: {type: string, description: "A category code that GET /v1/taxonomy lists; another answers 400, naming the known ones."}
        language: {type: string, description: "A language code that GET /v1/taxonomy lists."}
        channel: {type: string, description: "A channel code that GET /v1/taxonomy lists."}
        region: {type: string, description: "A region code that GET /v1/taxonomy lists (Morocco's twelve regions)."}
        content: {$ref: '#/components/schemas/Content'}
        sealed: {type: string, description: "Base64 of an envelope sealed on the gateway's side (format v1, its plaintext the JSON of a Content; see Envelope.md in RelayFormat), instead of content. The relay cannot open it: one sealed wrongly is stored all the same, and its responders see it as altered. Its object id becomes the case id: a UUIDv7 that carries only the minute (its Unix milliseconds a multiple of 60,000), so that no id pins a visit finer."}
        contentTag: {type: string, description: "With sealed only, 22 to 256 characters: derived from the plaintext under the Idempotency-Key and a secret the gateway keeps, the same for the same content (amane submit --seal sends base64 of HMAC-SHA256). A retry sealed afresh is then recognised by it, not by the envelope's bytes; without one, a retry must send the very same envelope (one sealed afresh is 409 idempotency_key_reused). Keyed by the Idempotency-Key alone, which the relay sees, it would let the relay test guesses of the content."}
    DisclosureReceipt:
      type: object
      required: [id, receipt, receivedAt]
      properties:
        id: {type: string}
        receipt: {type: string, description: "For the reporter: 16 digits in four groups of four, the last a check digit. The relay keeps only its hash."}
        receivedAt: {type: string, format: date-time, description: "UTC, to the minute."}
    FollowupSubmission:
      type: object
      description: The receipt, and exactly one of content and sealed.
      required: [receipt]
      properties:
        receipt: {type: string, description: "The 16 digits given to the reporter; spaces and dashes between them, and Arabic-Indic (U+0660) or Extended Arabic-Indic (U+06F0) digits, are taken too; a wrong check digit answers 400 receipt_misheard."}
        content: {$ref: '#/components/schemas/Content'}
        id: {type: string, description: "Required with sealed, and only with it: the envelope's object id, a UUIDv7 that carries only the minute (its Unix milliseconds a multiple of 60,000)."}
        sealed: {type: string}
        contentTag: {type: string, description: "With sealed only, as a disclosure's: a retry sealed afresh, under another id, is recognised by it (amane followup --seal sends one)."}
        urgency: {type: string, enum: [\#(Urgency.allCases.map(\.rawValue).joined(separator: ", "))], description: "What the reporter now tells makes the case this urgent: it is raised to this, never lowered."}
    FollowupAccepted:
      type: object
      required: [id, receivedAt]
      properties:
        id: {type: string}
        receivedAt: {type: string, format: date-time, description: "UTC, to the minute."}
    ReplyFetch:
      type: object
      required: [receipt]
      properties:
        receipt: {type: string, description: "The 16 digits given to the reporter; spaces and dashes between them, and Arabic-Indic (U+0660) or Extended Arabic-Indic (U+06F0) digits, are taken too; a wrong check digit answers 400 receipt_misheard."}
    SealedReply:
      type: object
      required: [id, sealed, createdAt]
      properties:
        id: {type: string, description: "The reply's id: its envelope's object id."}
        sealed: {type: string, description: "Base64 of the reply's envelope sealed to the gateway's key (kind reply, bound to the case; format in Envelope.md, see info)."}
        createdAt: {type: string, format: date-time, description: "UTC, to the minute."}
    ReplyKey:
      type: object
      required: [caseId, gatewayKey]
      properties:
        caseId: {type: string}
        gatewayKey: {type: string, description: The sealing key of the gateway that sent the case.}
        gateway: {type: string, description: "The gateway's name. A gateway's key never changes, so amane pins it under this name when it first replies through it, and refuses another key later."}
    ReplyList:
      type: object
      required: [caseId, replies]
      properties:
        caseId: {type: string, description: "The case the receipt names. Replies are sealed bound to it; a gateway that seals a follow-up itself binds it to this id."}
        replies: {type: array, items: {$ref: '#/components/schemas/SealedReply'}}
    SealingKeyInfo:
      type: object
      required: [queue, epoch, publicKey, fingerprint, narrativeMaxBytes, contentMaxBytes]
      properties:
        queue: {type: string}
        epoch: {type: string, description: "The key's id (the first 16 bytes of its digest, written as a UUID; Envelope.md): the key id in the header of what is sealed to it."}
        publicKey: {type: string}
        fingerprint: {type: string}
        narrativeMaxBytes: {type: integer, description: "limits.narrativeMaxBytes: a gateway that seals checks the narrative against it before sealing, since the relay cannot look inside an envelope"}
        contentMaxBytes: {type: integer, description: "limits.maxBodyBytes: the most bytes the content may hold as JSON, checked likewise before sealing"}
    CaseView:
      type: object
      required: [id, queue, urgency, category, language, channel, state, onHold, updated, receivedAt, purged]
      properties:
        id: {type: string}
        queue: {type: string}
        urgency: {type: string, enum: [\#(Urgency.allCases.map(\.rawValue).joined(separator: ", "))]}
        category: {type: string}
        language: {type: string}
        channel: {type: string}
        region: {type: string}
        state: {type: string, enum: [\#(CaseState.allCases.map(\.rawValue).joined(separator: ", "))]}
        assignee: {type: string}
        claimExpiresAt: {type: string, format: date-time}
        onHold: {type: boolean}
        updated: {type: boolean}
        referral: {type: string}
        outcome: {type: string}
        receivedAt: {type: string, format: date-time, description: "UTC, to the minute."}
        slaDueAt: {type: string, format: date-time, description: "When the case passes the wait that the triage policy allows its urgency. An unclaimed (new) case counts from its arrival or, once reopened, from its latest reopening; a held one (claimed, in_progress, referred) has it only while its holder has not opened a reporter's follow-up, counted from the earliest one not opened, or from the case's latest reopening if later (a claim or an assignment does not restart it). A follow-up that raises the urgency makes it due within the new urgency's wait from then, or by its earlier deadline. Absent when no one is waited on."}
        purged: {type: boolean}
        epoch: {type: string, description: "The queue key the disclosure is sealed to: only members who hold it open, claim or are assigned the case."}
    QueueListing:
      type: object
      required: [cases]
      properties:
        cases: {type: array, items: {$ref: '#/components/schemas/CaseView'}}
        next: {type: string, description: Pass as cursor for the next page; absent on the last page.}
    SealedObjectView:
      type: object
      required: [id, kind, author, epoch, sealed, createdAt]
      properties:
        id: {type: string}
        kind: {type: string, enum: [\#(SealedItem.Kind.allCases.map(\.rawValue).joined(separator: ", "))]}
        author: {type: string}
        epoch: {type: string}
        sealed: {type: string}
        createdAt: {type: string, format: date-time, description: "UTC, to the minute."}
        raisedUrgency: {type: string, enum: [\#(Urgency.allCases.map(\.rawValue).joined(separator: ", "))], description: "A follow-up that made its case more urgent: the urgency it raised the case to."}
    CaseFile:
      type: object
      required: [case, items]
      properties:
        case: {$ref: '#/components/schemas/CaseView'}
        disclosure: {$ref: '#/components/schemas/SealedObjectView'}
        items: {type: array, items: {$ref: '#/components/schemas/SealedObjectView'}}
        gatewayKey: {type: string}
    TransitionRequest:
      type: object
      required: [action]
      properties:
        action: {type: string, enum: [\#(RelayRoutes.transitionActions.map(\.rawValue).joined(separator: ", "))]}
        referral: {type: string}
        outcome: {type: string}
    NoteSubmission:
      type: object
      required: [id, sealed]
      properties:
        id: {type: string}
        sealed: {type: string}
    ReplySubmission:
      type: object
      required: [id, sealed, gatewaySealed]
      properties:
        id: {type: string}
        sealed: {type: string}
        gatewaySealed: {type: string}
    AssignRequest:
      type: object
      required: [to]
      properties:
        to: {type: string}
    HoldRequest:
      type: object
      required: ["on"]
      properties:
        "on": {type: boolean}
    Accepted:
      type: object
      required: [id]
      properties:
        id: {type: string}
    GrantsStored:
      type: object
      required: [id, kept]
      properties:
        id: {type: string}
        kept: {type: array, description: Members who held a grant of this epoch already and kept it., items: {type: string}}
    GrantView:
      type: object
      required: [epoch, queue, sealed, grantedBy, current]
      properties:
        epoch: {type: string}
        queue: {type: string}
        sealed: {type: string}
        grantedBy: {type: string}
        current: {type: boolean}
    GrantList:
      type: object
      required: [grants]
      properties:
        grants: {type: array, items: {$ref: '#/components/schemas/GrantView'}}
    GrantUpload:
      type: object
      required: [epoch, grants]
      properties:
        epoch: {type: string}
        grants: {type: object, description: Sealed grants by member name., additionalProperties: {type: string}}
    EpochCreation:
      type: object
      required: [publicKey, grants]
      properties:
        queue: {type: string}
        publicKey: {type: string}
        grants: {type: object, description: Sealed grants by member name., additionalProperties: {type: string}}
    EpochView:
      type: object
      required: [id, queue, publicKey, createdBy, current]
      properties:
        id: {type: string}
        queue: {type: string}
        publicKey: {type: string}
        createdBy: {type: string}
        current: {type: boolean}
    MemberView:
      type: object
      required: [name, role]
      properties:
        name: {type: string}
        role: {type: string, enum: [\#(Role.enrollable.map(\.rawValue).joined(separator: ", "))]}
        sealingKey: {type: string}
        fingerprint: {type: string}
        holdsCurrentKey: {type: boolean}
    MemberList:
      type: object
      required: [members]
      properties:
        members: {type: array, items: {$ref: '#/components/schemas/MemberView'}}
    StatRow:
      type: object
      required: [key, count]
      properties:
        key: {type: string}
        count: {type: integer}
    Statistics:
      type: object
      required: [by, rows]
      properties:
        by: {type: string}
        rows: {type: array, items: {$ref: '#/components/schemas/StatRow'}}
        from: {type: string, description: "The first month counted, when the request named one"}
        to: {type: string, description: "The last month counted, when the request named one"}
        queue: {type: string, description: "The queue counted: the caller's"}
    AuditEntryView:
      type: object
      required: [seq, time, actor, action, subject, detail, prevHash, hash]
      properties:
        seq: {type: integer}
        time: {type: integer}
        actor: {type: string}
        action: {type: string}
        subject: {type: string}
        detail: {type: string}
        prevHash: {type: string}
        hash: {type: string}
        withheld: {type: boolean, description: "True for an entry about another queue: its contents are blank (time 0, empty texts), and only its place in the chain is given"}
    AuditPage:
      type: object
      required: [entries]
      properties:
        entries: {type: array, items: {$ref: '#/components/schemas/AuditEntryView'}}
        next: {type: integer, description: Pass as after for the next page; absent on the last page.}
    TaxonomyLabel:
      type: object
      required: [code, fr, ar, en]
      properties:
        code: {type: string}
        fr: {type: string}
        ar: {type: string}
        en: {type: string}
    TaxonomyListing:
      type: object
      required: [labels]
      properties:
        labels:
          type: object
          description: By field name (category, urgency, referral, outcome, language, channel, region), in the order to show them.
          additionalProperties: {type: array, items: {$ref: '#/components/schemas/TaxonomyLabel'}}
    Identity:
      type: object
      required: [name, role, queue]
      properties:
        name: {type: string}
        role: {type: string, enum: [\#(Role.enrollable.map(\.rawValue).joined(separator: ", "))]}
        queue: {type: string}
"""#
}
