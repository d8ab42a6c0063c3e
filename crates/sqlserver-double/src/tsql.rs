//! The statements the double understands, parsed from a batch's text. Parsing is tolerant the way
//! SQL Server's is: keywords in any case, any whitespace and newlines between tokens, identifiers
//! bare or in brackets (`]]` is a `]`), literals as `'…'` or `N'…'` (`''` is a `'`), an optional `;`
//! after each statement. A batch may hold several statements (the coordinator's promote step
//! sends two, separated by `;` or a newline); each is parsed where the previous one ended.
//!
//! The grammar of each statement follows its Transact-SQL reference page on learn.microsoft.com
//! (named at each [`Statement`] variant), restricted to the clauses the coordinator sends.

use std::fmt;

/// A token of T-SQL text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Token {
    /// A bare word: keyword, identifier, `@variable` or `@@function`.
    Word(String),
    /// A bracket-quoted identifier, unescaped.
    Quoted(String),
    /// A string literal (`'…'` or `N'…'`), unescaped.
    Text(String),
    Number(i64),
    /// `(`, `)`, `,`, `=`, `;`, `.`, `*`.
    Punct(char),
    /// `::` (as in `ENDPOINT::[name]`).
    Scope,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Word(w) => f.write_str(w),
            Token::Quoted(q) => write!(f, "[{}]", q.replace(']', "]]")),
            Token::Text(t) => write!(f, "'{}'", t.replace('\'', "''")),
            Token::Number(n) => write!(f, "{n}"),
            Token::Punct(c) => write!(f, "{c}"),
            Token::Scope => f.write_str("::"),
        }
    }
}

/// Why a batch could not be parsed: SQL Server's "Incorrect syntax near '…'" (error 102).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    /// The token the parser stopped at, as SQL Server quotes it; empty at the end of the batch.
    pub near: String,
}

/// Splits `text` into tokens. `--` comments run to the end of the line.
pub fn lex(text: &str) -> Result<Vec<Token>, SyntaxError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let near = |from: usize| SyntaxError {
        near: chars[from..].iter().take(20).collect(),
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '[' {
            let start = i;
            let mut name = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(near(start)),
                    Some(']') if chars.get(i + 1) == Some(&']') => {
                        name.push(']');
                        i += 2;
                    }
                    Some(']') => {
                        i += 1;
                        break;
                    }
                    Some(&other) => {
                        name.push(other);
                        i += 1;
                    }
                }
            }
            tokens.push(Token::Quoted(name));
        } else if c == '\'' || ((c == 'N' || c == 'n') && chars.get(i + 1) == Some(&'\'')) {
            let start = i;
            i += if c == '\'' { 1 } else { 2 };
            let mut value = String::new();
            loop {
                match chars.get(i) {
                    None => return Err(near(start)),
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        value.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(&other) => {
                        value.push(other);
                        i += 1;
                    }
                }
            }
            tokens.push(Token::Text(value));
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let digits: String = chars[start..i].iter().collect();
            tokens.push(Token::Number(digits.parse().map_err(|_| near(start))?));
        } else if c.is_alphanumeric() || c == '_' || c == '@' || c == '#' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '@' | '#' | '$'))
            {
                i += 1;
            }
            tokens.push(Token::Word(chars[start..i].iter().collect()));
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            tokens.push(Token::Scope);
            i += 2;
        } else if "(),=;.*".contains(c) {
            tokens.push(Token::Punct(c));
            i += 1;
        } else {
            return Err(near(i));
        }
    }
    Ok(tokens)
}

/// SECONDARY_ROLE (ALLOW_CONNECTIONS = …) of a replica ("CREATE AVAILABILITY GROUP
/// (Transact-SQL)").
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AllowConnections {
    No,
    ReadOnly,
    All,
}

impl AllowConnections {
    /// sys.availability_replicas.secondary_role_allow_connections_desc.
    pub fn desc(self) -> &'static str {
        match self {
            AllowConnections::No => "NO",
            AllowConnections::ReadOnly => "READ_ONLY",
            AllowConnections::All => "ALL",
        }
    }
}

/// `<server_instance> WITH (…)` of CREATE AVAILABILITY GROUP and ADD REPLICA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaSpec {
    pub name: String,
    pub endpoint_url: String,
    /// AVAILABILITY_MODE: only SYNCHRONOUS_COMMIT is emulated.
    pub availability_mode: String,
    pub failover_mode: String,
    pub seeding_mode: String,
    pub secondary_allow: AllowConnections,
}

/// WITH (…) of CREATE AVAILABILITY GROUP.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupOptions {
    pub db_failover: bool,
    pub cluster_type: String,
    pub write_lease_validity: Option<u32>,
    pub required_synchronized_secondaries_to_commit: u32,
}

/// What follows `ALTER AVAILABILITY GROUP [ag]` ("ALTER AVAILABILITY GROUP (Transact-SQL)").
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupAction {
    GrantCreateAnyDatabase,
    AddReplica(ReplicaSpec),
    RemoveReplica(String),
    ModifyReplica {
        name: String,
        secondary_allow: AllowConnections,
    },
    /// JOIN WITH (CLUSTER_TYPE = …).
    Join {
        cluster_type: String,
    },
    SetWriteLeaseValidity(u32),
    /// SET (REQUIRED_SYNCHRONIZED_SECONDARIES_TO_COMMIT = n), primary only.
    SetRequiredSynchronizedSecondaries(u32),
    SetRoleSecondary,
    Offline,
    Failover,
    ForceFailoverAllowDataLoss,
    AddDatabase(String),
}

/// The state queries of the coordinator, recognised by their exact text: the three of
/// docs/coordinator.md and the endpoint's certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateQuery {
    LocalReplica,
    Replicas,
    LocalDatabases,
    EndpointCertificates,
}

/// The local replica and its group (sys.availability_groups, sys.dm_hadr_availability_replica_states).
pub const LOCAL_REPLICA_QUERY: &str = "SELECT ag.name, ag.sequence_number, \
ag.required_synchronized_secondaries_to_commit, ars.role_desc, ars.operational_state_desc, \
ars.connected_state_desc, ars.synchronization_health_desc \
FROM sys.availability_groups AS ag \
JOIN sys.dm_hadr_availability_replica_states AS ars ON ars.group_id = ag.group_id \
WHERE ars.is_local = 1";

/// Every replica of the group (sys.availability_replicas, sys.dm_hadr_availability_replica_states).
pub const REPLICAS_QUERY: &str = "SELECT ar.replica_server_name, ar.endpoint_url, \
ar.secondary_role_allow_connections_desc, ars.role_desc, ars.connected_state_desc, \
ars.synchronization_health_desc \
FROM sys.availability_replicas AS ar \
LEFT JOIN sys.dm_hadr_availability_replica_states AS ars ON ars.replica_id = ar.replica_id";

/// The local availability databases (sys.dm_hadr_database_replica_states).
pub const LOCAL_DATABASES_QUERY: &str = "SELECT DB_NAME(drs.database_id), \
drs.synchronization_state_desc, drs.is_suspended, drs.last_hardened_lsn \
FROM sys.dm_hadr_database_replica_states AS drs \
WHERE drs.is_local = 1";

/// The certificates of master, each with its DER encoding and the endpoint that authenticates with
/// it ("sys.certificates (Transact-SQL)", "CERTENCODED (Transact-SQL)",
/// "sys.database_mirroring_endpoints (Transact-SQL)": `certificate_id` is the certificate the
/// endpoint uses for authentication).
pub const ENDPOINT_CERTIFICATES_QUERY: &str = "SELECT c.name, CERTENCODED(c.certificate_id), \
e.name FROM sys.certificates AS c \
LEFT JOIN sys.database_mirroring_endpoints AS e ON e.certificate_id = c.certificate_id";

/// A statement of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Statement {
    SelectOne,
    SelectVersion,
    /// `SELECT @@SERVERNAME, SERVERPROPERTY('IsHadrEnabled')` ("@@SERVERNAME (Transact-SQL)",
    /// "SERVERPROPERTY (Transact-SQL)").
    SelectServerNameAndHadr,
    State(StateQuery),
    /// "CREATE MASTER KEY (Transact-SQL)".
    CreateMasterKey {
        password: String,
    },
    /// "CREATE LOGIN (Transact-SQL)", SQL Server authentication only.
    CreateLogin {
        name: String,
        password: String,
    },
    /// "CREATE USER (Transact-SQL)", FOR LOGIN only.
    CreateUser {
        name: String,
        login: String,
    },
    /// "CREATE CERTIFICATE (Transact-SQL)", FROM FILE … WITH FORMAT = 'PFX' only.
    CreateCertificate {
        name: String,
        owner: Option<String>,
        file: String,
        decryption_password: Option<String>,
    },
    /// "CREATE ENDPOINT (Transact-SQL)", AS TCP (…, LISTENER_IP = ALL) FOR DATABASE_MIRRORING
    /// with certificate authentication only.
    CreateEndpoint {
        name: String,
        started: bool,
        port: u16,
        role: String,
        certificate: String,
        encryption_required: bool,
    },
    /// "ALTER ENDPOINT (Transact-SQL)", FOR DATABASE_MIRRORING (AUTHENTICATION = CERTIFICATE …)
    /// only.
    AlterEndpointCertificate {
        name: String,
        certificate: String,
    },
    /// "DROP CERTIFICATE (Transact-SQL)".
    DropCertificate {
        name: String,
    },
    /// "GRANT Endpoint Permissions (Transact-SQL)", CONNECT only.
    GrantConnectOnEndpoint {
        endpoint: String,
        login: String,
    },
    /// "CREATE AVAILABILITY GROUP (Transact-SQL)".
    CreateAvailabilityGroup {
        name: String,
        options: GroupOptions,
        replicas: Vec<ReplicaSpec>,
    },
    /// "ALTER AVAILABILITY GROUP (Transact-SQL)".
    AlterAvailabilityGroup {
        name: String,
        action: GroupAction,
    },
    /// "DROP AVAILABILITY GROUP (Transact-SQL)".
    DropAvailabilityGroup {
        name: String,
    },
    /// "sp_set_session_context (Transact-SQL)".
    SetSessionContext {
        key: String,
        value: String,
    },
    /// "CREATE DATABASE", name only.
    CreateDatabase {
        name: String,
    },
    /// "ALTER DATABASE SET options (Transact-SQL)": RECOVERY FULL | BULK_LOGGED | SIMPLE.
    SetRecovery {
        database: String,
        model: String,
    },
    /// "BACKUP (Transact-SQL)": a full database backup TO DISK.
    BackupDatabase {
        database: String,
        disk: String,
    },
    /// "ALTER DATABASE SET HADR (Transact-SQL)": RESUME.
    SetHadrResume {
        database: String,
    },
    /// "CREATE TABLE (Transact-SQL)": one `BIGINT NOT NULL PRIMARY KEY` column.
    CreateTable {
        table: TableName,
        column: String,
    },
    /// "INSERT (Transact-SQL)": one value.
    Insert {
        table: TableName,
        value: i64,
    },
    /// `SELECT <column> FROM <table> ORDER BY <column>`.
    SelectColumn {
        table: TableName,
        column: String,
    },
    /// `SELECT COUNT_BIG(*) FROM <table>`.
    CountRows {
        table: TableName,
    },
}

/// `[db].[schema].[table]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableName {
    pub database: String,
    pub schema: String,
    pub table: String,
}

/// A batch: its statements, or what stopped the parser. Statements the double does not know make
/// the whole batch [`Batch::Unknown`] (error 50000, as before this module existed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Batch {
    Statements(Vec<Statement>),
    Syntax(SyntaxError),
    Unknown,
}

/// Parses a batch.
pub fn parse(text: &str) -> Batch {
    let tokens = match lex(text) {
        Ok(tokens) => tokens,
        Err(e) => return Batch::Syntax(e),
    };
    for (query, constant) in [
        (StateQuery::LocalReplica, LOCAL_REPLICA_QUERY),
        (StateQuery::Replicas, REPLICAS_QUERY),
        (StateQuery::LocalDatabases, LOCAL_DATABASES_QUERY),
        (
            StateQuery::EndpointCertificates,
            ENDPOINT_CERTIFICATES_QUERY,
        ),
    ] {
        if same_text(&tokens, constant) {
            return Batch::Statements(vec![Statement::State(query)]);
        }
    }
    let mut parser = Parser { tokens, at: 0 };
    let mut statements = Vec::new();
    loop {
        while parser.eat_punct(';') {}
        if parser.done() {
            break;
        }
        match parser.statement() {
            Ok(Some(statement)) => statements.push(statement),
            Ok(None) => return Batch::Unknown,
            Err(e) => return Batch::Syntax(e),
        }
    }
    if statements.is_empty() {
        Batch::Unknown
    } else {
        Batch::Statements(statements)
    }
}

/// Whether `tokens` are `constant`'s tokens, keywords and names compared case-insensitively, a
/// trailing `;` aside.
fn same_text(tokens: &[Token], constant: &str) -> bool {
    let mut tokens = tokens;
    while let [rest @ .., Token::Punct(';')] = tokens {
        tokens = rest;
    }
    let Ok(expected) = lex(constant) else {
        return false;
    };
    tokens.len() == expected.len()
        && tokens.iter().zip(&expected).all(|(a, b)| match (a, b) {
            (Token::Word(a), Token::Word(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => a == b,
        })
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

/// One `key = value` or `key (…)` of an option list such as `WITH (…)`.
#[derive(Clone, Debug)]
struct Opt {
    key: String,
    value: OptValue,
    /// Where the option started, for errors.
    at: Token,
}

#[derive(Clone, Debug)]
enum OptValue {
    /// The tokens after `=`, up to the next `,` or `)`: `ALL`, `5022`, `N'…'`,
    /// `CERTIFICATE [c]`, `REQUIRED ALGORITHM AES`.
    Atoms(Vec<Token>),
    Nested(Vec<Opt>),
}

type Parsed<T> = Result<T, SyntaxError>;

impl Parser {
    fn done(&self) -> bool {
        self.at >= self.tokens.len()
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn error(&self) -> SyntaxError {
        SyntaxError {
            near: self.peek().map(ToString::to_string).unwrap_or_default(),
        }
    }

    fn is_word(&self, offset: usize, word: &str) -> bool {
        matches!(self.tokens.get(self.at + offset), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
    }

    /// Whether the next tokens are these keywords (not consumed).
    fn at_words(&self, words: &[&str]) -> bool {
        words.iter().enumerate().all(|(i, w)| self.is_word(i, w))
    }

    fn eat_words(&mut self, words: &[&str]) -> bool {
        let matched = self.at_words(words);
        if matched {
            self.at += words.len();
        }
        matched
    }

    fn words(&mut self, words: &[&str]) -> Parsed<()> {
        if self.eat_words(words) {
            Ok(())
        } else {
            Err(self.error())
        }
    }

    fn eat_punct(&mut self, c: char) -> bool {
        let matched = self.peek() == Some(&Token::Punct(c));
        if matched {
            self.at += 1;
        }
        matched
    }

    fn punct(&mut self, c: char) -> Parsed<()> {
        if self.eat_punct(c) {
            Ok(())
        } else {
            Err(self.error())
        }
    }

    fn next(&mut self) -> Parsed<Token> {
        let token = self.peek().cloned().ok_or_else(|| self.error())?;
        self.at += 1;
        Ok(token)
    }

    /// An identifier, bare or bracketed.
    fn name(&mut self) -> Parsed<String> {
        match self.peek() {
            Some(Token::Word(w) | Token::Quoted(w)) => {
                let name = w.clone();
                self.at += 1;
                Ok(name)
            }
            _ => Err(self.error()),
        }
    }

    fn text(&mut self) -> Parsed<String> {
        match self.peek() {
            Some(Token::Text(t)) => {
                let text = t.clone();
                self.at += 1;
                Ok(text)
            }
            _ => Err(self.error()),
        }
    }

    fn number(&mut self) -> Parsed<i64> {
        match self.peek() {
            Some(&Token::Number(n)) => {
                self.at += 1;
                Ok(n)
            }
            _ => Err(self.error()),
        }
    }

    /// `[db].[schema].[table]` (all three parts are required: the double has no current database).
    fn table_name(&mut self) -> Parsed<TableName> {
        let database = self.name()?;
        self.punct('.')?;
        let schema = self.name()?;
        self.punct('.')?;
        let table = self.name()?;
        Ok(TableName {
            database,
            schema,
            table,
        })
    }

    /// `( opt, opt, … )`.
    fn options(&mut self) -> Parsed<Vec<Opt>> {
        self.punct('(')?;
        let mut options = Vec::new();
        loop {
            let at = self.peek().cloned().ok_or_else(|| self.error())?;
            let key = self.name()?.to_ascii_uppercase();
            let value = if self.eat_punct('=') {
                let mut atoms = Vec::new();
                while !matches!(self.peek(), Some(Token::Punct(',' | ')')) | None) {
                    atoms.push(self.next()?);
                }
                if atoms.is_empty() {
                    return Err(self.error());
                }
                OptValue::Atoms(atoms)
            } else if self.peek() == Some(&Token::Punct('(')) {
                OptValue::Nested(self.options()?)
            } else {
                return Err(self.error());
            };
            options.push(Opt { key, value, at });
            if !self.eat_punct(',') {
                break;
            }
        }
        self.punct(')')?;
        Ok(options)
    }

    /// One statement; `None` when it is not one the double knows.
    fn statement(&mut self) -> Parsed<Option<Statement>> {
        let statement = if self.at_words(&["SELECT"]) {
            return self.select();
        } else if self.eat_words(&["CREATE", "MASTER", "KEY"]) {
            self.words(&["ENCRYPTION", "BY", "PASSWORD"])?;
            self.punct('=')?;
            Statement::CreateMasterKey {
                password: self.text()?,
            }
        } else if self.eat_words(&["CREATE", "LOGIN"]) {
            let name = self.name()?;
            self.words(&["WITH", "PASSWORD"])?;
            self.punct('=')?;
            Statement::CreateLogin {
                name,
                password: self.text()?,
            }
        } else if self.eat_words(&["CREATE", "USER"]) {
            let name = self.name()?;
            self.words(&["FOR", "LOGIN"])?;
            Statement::CreateUser {
                name,
                login: self.name()?,
            }
        } else if self.eat_words(&["CREATE", "CERTIFICATE"]) {
            self.create_certificate()?
        } else if self.eat_words(&["CREATE", "ENDPOINT"]) {
            self.create_endpoint()?
        } else if self.eat_words(&["ALTER", "ENDPOINT"]) {
            return self.alter_endpoint();
        } else if self.eat_words(&["DROP", "CERTIFICATE"]) {
            Statement::DropCertificate { name: self.name()? }
        } else if self.eat_words(&["GRANT", "CONNECT", "ON", "ENDPOINT"]) {
            if self.peek() != Some(&Token::Scope) {
                return Err(self.error());
            }
            self.at += 1;
            let endpoint = self.name()?;
            self.words(&["TO"])?;
            Statement::GrantConnectOnEndpoint {
                endpoint,
                login: self.name()?,
            }
        } else if self.eat_words(&["CREATE", "AVAILABILITY", "GROUP"]) {
            self.create_availability_group()?
        } else if self.eat_words(&["ALTER", "AVAILABILITY", "GROUP"]) {
            let name = self.name()?;
            Statement::AlterAvailabilityGroup {
                name,
                action: self.group_action()?,
            }
        } else if self.eat_words(&["DROP", "AVAILABILITY", "GROUP"]) {
            Statement::DropAvailabilityGroup { name: self.name()? }
        } else if self.at_words(&["EXEC", "sp_set_session_context"])
            || self.at_words(&["EXECUTE", "sp_set_session_context"])
            || self.at_words(&["EXEC", "sys"])
            || self.at_words(&["EXECUTE", "sys"])
        {
            self.at += 1;
            if self.eat_words(&["sys"]) {
                self.punct('.')?;
            }
            self.words(&["sp_set_session_context"])?;
            self.session_context()?
        } else if self.eat_words(&["CREATE", "DATABASE"]) {
            Statement::CreateDatabase { name: self.name()? }
        } else if self.eat_words(&["ALTER", "DATABASE"]) {
            let database = self.name()?;
            self.words(&["SET"])?;
            if self.eat_words(&["RECOVERY"]) {
                let model = self.name()?.to_ascii_uppercase();
                if !matches!(model.as_str(), "FULL" | "BULK_LOGGED" | "SIMPLE") {
                    self.at -= 1;
                    return Err(self.error());
                }
                Statement::SetRecovery { database, model }
            } else if self.eat_words(&["HADR", "RESUME"]) {
                Statement::SetHadrResume { database }
            } else {
                return Ok(None);
            }
        } else if self.eat_words(&["BACKUP", "DATABASE"]) {
            let database = self.name()?;
            self.words(&["TO", "DISK"])?;
            self.punct('=')?;
            Statement::BackupDatabase {
                database,
                disk: self.text()?,
            }
        } else if self.eat_words(&["CREATE", "TABLE"]) {
            let table = self.table_name()?;
            self.punct('(')?;
            let column = self.name()?;
            self.words(&["BIGINT", "NOT", "NULL", "PRIMARY", "KEY"])?;
            self.punct(')')?;
            Statement::CreateTable { table, column }
        } else if self.eat_words(&["INSERT", "INTO"]) {
            let table = self.table_name()?;
            self.punct('(')?;
            self.name()?;
            self.punct(')')?;
            self.words(&["VALUES"])?;
            self.punct('(')?;
            let value = self.number()?;
            self.punct(')')?;
            Statement::Insert { table, value }
        } else {
            return Ok(None);
        };
        Ok(Some(statement))
    }

    fn select(&mut self) -> Parsed<Option<Statement>> {
        self.words(&["SELECT"])?;
        if let Some(Token::Number(1)) = self.peek() {
            self.at += 1;
            return Ok(Some(Statement::SelectOne));
        }
        if self.eat_words(&["@@VERSION"]) {
            return Ok(Some(Statement::SelectVersion));
        }
        if self.eat_words(&["@@SERVERNAME"]) {
            self.punct(',')?;
            self.words(&["SERVERPROPERTY"])?;
            self.punct('(')?;
            let property = self.text()?;
            self.punct(')')?;
            if !property.eq_ignore_ascii_case("IsHadrEnabled") {
                return Ok(None);
            }
            return Ok(Some(Statement::SelectServerNameAndHadr));
        }
        // Any other SELECT is a query the double does not run (50000), not a syntax error.
        Ok(self.select_from_table().ok())
    }

    /// `COUNT_BIG(*) FROM <table>` or `<column> FROM <table> ORDER BY <column>`.
    fn select_from_table(&mut self) -> Parsed<Statement> {
        if self.eat_words(&["COUNT_BIG"]) {
            self.punct('(')?;
            self.punct('*')?;
            self.punct(')')?;
            self.words(&["FROM"])?;
            return Ok(Statement::CountRows {
                table: self.table_name()?,
            });
        }
        let column = self.name()?;
        self.words(&["FROM"])?;
        let table = self.table_name()?;
        self.words(&["ORDER", "BY"])?;
        if !self.name()?.eq_ignore_ascii_case(&column) {
            return Err(self.error());
        }
        Ok(Statement::SelectColumn { table, column })
    }

    fn create_certificate(&mut self) -> Parsed<Statement> {
        let name = self.name()?;
        let owner = if self.eat_words(&["AUTHORIZATION"]) {
            Some(self.name()?)
        } else {
            None
        };
        self.words(&["FROM", "FILE"])?;
        self.punct('=')?;
        let file = self.text()?;
        self.words(&["WITH", "FORMAT"])?;
        self.punct('=')?;
        let format = self.text()?;
        if !format.eq_ignore_ascii_case("PFX") {
            self.at -= 1;
            return Err(self.error());
        }
        let mut decryption_password = None;
        if self.eat_punct(',') {
            self.words(&["PRIVATE", "KEY"])?;
            self.punct('(')?;
            self.words(&["DECRYPTION", "BY", "PASSWORD"])?;
            self.punct('=')?;
            decryption_password = Some(self.text()?);
            self.punct(')')?;
        }
        Ok(Statement::CreateCertificate {
            name,
            owner,
            file,
            decryption_password,
        })
    }

    fn create_endpoint(&mut self) -> Parsed<Statement> {
        let name = self.name()?;
        let mut started = false;
        if self.eat_words(&["STATE"]) {
            self.punct('=')?;
            started = match self.name()?.to_ascii_uppercase().as_str() {
                "STARTED" => true,
                "STOPPED" | "DISABLED" => false,
                _ => {
                    self.at -= 1;
                    return Err(self.error());
                }
            };
        }
        self.words(&["AS", "TCP"])?;
        let tcp = self.options()?;
        self.words(&["FOR", "DATABASE_MIRRORING"])?;
        let mirroring = self.options()?;
        let mut port = None;
        for option in &tcp {
            match (option.key.as_str(), atoms(option)) {
                ("LISTENER_PORT", Some([Token::Number(n)])) => {
                    port = Some(u16::try_from(*n).map_err(|_| near(option))?)
                }
                ("LISTENER_IP", Some([Token::Word(w)])) if w.eq_ignore_ascii_case("ALL") => {}
                _ => return Err(near(option)),
            }
        }
        let (mut role, mut certificate, mut encryption_required) = (None, None, false);
        for option in &mirroring {
            match (option.key.as_str(), atoms(option)) {
                ("ROLE", Some([Token::Word(w)])) => role = Some(w.to_ascii_uppercase()),
                ("AUTHENTICATION", Some([Token::Word(w), name]))
                    if w.eq_ignore_ascii_case("CERTIFICATE") =>
                {
                    certificate = Some(match name {
                        Token::Word(n) | Token::Quoted(n) => n.clone(),
                        _ => return Err(near(option)),
                    })
                }
                ("ENCRYPTION", Some(value)) => {
                    encryption_required = match value {
                        [Token::Word(r), rest @ ..] if r.eq_ignore_ascii_case("REQUIRED") => {
                            aes_only(rest).ok_or_else(|| near(option))?
                        }
                        [Token::Word(s), rest @ ..] if s.eq_ignore_ascii_case("SUPPORTED") => {
                            aes_only(rest).ok_or_else(|| near(option))?;
                            false
                        }
                        [Token::Word(d)] if d.eq_ignore_ascii_case("DISABLED") => false,
                        _ => return Err(near(option)),
                    }
                }
                _ => return Err(near(option)),
            }
        }
        let (Some(port), Some(certificate)) = (port, certificate) else {
            return Err(self.error());
        };
        Ok(Statement::CreateEndpoint {
            name,
            started,
            port,
            role: role.unwrap_or_else(|| "ALL".into()),
            certificate,
            encryption_required,
        })
    }

    /// `<name> FOR DATABASE_MIRRORING (AUTHENTICATION = CERTIFICATE <certificate>)`; any other
    /// ALTER ENDPOINT is one the double does not emulate.
    fn alter_endpoint(&mut self) -> Parsed<Option<Statement>> {
        let name = self.name()?;
        if !self.eat_words(&["FOR", "DATABASE_MIRRORING"]) {
            return Ok(None);
        }
        let options = self.options()?;
        let [option] = options.as_slice() else {
            return Ok(None);
        };
        let certificate = match atoms(option) {
            Some([Token::Word(w), Token::Word(c) | Token::Quoted(c)])
                if option.key == "AUTHENTICATION" && w.eq_ignore_ascii_case("CERTIFICATE") =>
            {
                c.clone()
            }
            _ => return Ok(None),
        };
        Ok(Some(Statement::AlterEndpointCertificate {
            name,
            certificate,
        }))
    }

    fn create_availability_group(&mut self) -> Parsed<Statement> {
        let name = self.name()?;
        self.words(&["WITH"])?;
        let mut options = GroupOptions::default();
        for option in self.options()? {
            let value = atoms(&option).ok_or_else(|| near(&option))?;
            match (option.key.as_str(), value) {
                ("DB_FAILOVER", [Token::Word(w)]) => {
                    options.db_failover = on_off(w).ok_or_else(|| near(&option))?
                }
                ("CLUSTER_TYPE", [Token::Word(w)]) => options.cluster_type = w.to_ascii_uppercase(),
                ("WRITE_LEASE_VALIDITY", [Token::Number(n)]) => {
                    options.write_lease_validity =
                        Some(u32::try_from(*n).map_err(|_| near(&option))?)
                }
                ("REQUIRED_SYNCHRONIZED_SECONDARIES_TO_COMMIT", [Token::Number(n)]) => {
                    options.required_synchronized_secondaries_to_commit =
                        u32::try_from(*n).map_err(|_| near(&option))?
                }
                _ => return Err(near(&option)),
            }
        }
        self.words(&["FOR", "REPLICA", "ON"])?;
        let mut replicas = vec![self.replica_spec()?];
        while self.eat_punct(',') {
            replicas.push(self.replica_spec()?);
        }
        Ok(Statement::CreateAvailabilityGroup {
            name,
            options,
            replicas,
        })
    }

    /// `N'name' WITH (…)`.
    fn replica_spec(&mut self) -> Parsed<ReplicaSpec> {
        let name = self.text()?;
        self.words(&["WITH"])?;
        let mut spec = ReplicaSpec {
            name,
            endpoint_url: String::new(),
            availability_mode: String::new(),
            failover_mode: String::new(),
            seeding_mode: "MANUAL".into(),
            secondary_allow: AllowConnections::No,
        };
        for option in self.options()? {
            match (option.key.as_str(), &option.value) {
                ("ENDPOINT_URL", OptValue::Atoms(v)) => match v.as_slice() {
                    [Token::Text(url)] => spec.endpoint_url = url.clone(),
                    _ => return Err(near(&option)),
                },
                ("AVAILABILITY_MODE" | "FAILOVER_MODE" | "SEEDING_MODE", OptValue::Atoms(v)) => {
                    let [Token::Word(w)] = v.as_slice() else {
                        return Err(near(&option));
                    };
                    let w = w.to_ascii_uppercase();
                    match option.key.as_str() {
                        "AVAILABILITY_MODE" => spec.availability_mode = w,
                        "FAILOVER_MODE" => spec.failover_mode = w,
                        _ => spec.seeding_mode = w,
                    }
                }
                ("PRIMARY_ROLE", OptValue::Nested(inner)) => {
                    for o in inner {
                        match (o.key.as_str(), atoms(o)) {
                            ("ALLOW_CONNECTIONS", Some([Token::Word(w)]))
                                if w.eq_ignore_ascii_case("READ_WRITE")
                                    || w.eq_ignore_ascii_case("ALL") => {}
                            _ => return Err(near(o)),
                        }
                    }
                }
                ("SECONDARY_ROLE", OptValue::Nested(inner)) => {
                    spec.secondary_allow = secondary_role(inner)?;
                }
                _ => return Err(near(&option)),
            }
        }
        if spec.endpoint_url.is_empty()
            || spec.availability_mode.is_empty()
            || spec.failover_mode.is_empty()
        {
            return Err(self.error());
        }
        Ok(spec)
    }

    fn group_action(&mut self) -> Parsed<GroupAction> {
        let action = if self.eat_words(&["GRANT", "CREATE", "ANY", "DATABASE"]) {
            GroupAction::GrantCreateAnyDatabase
        } else if self.eat_words(&["ADD", "REPLICA", "ON"]) {
            GroupAction::AddReplica(self.replica_spec()?)
        } else if self.eat_words(&["REMOVE", "REPLICA", "ON"]) {
            GroupAction::RemoveReplica(self.text()?)
        } else if self.eat_words(&["MODIFY", "REPLICA", "ON"]) {
            let name = self.text()?;
            self.words(&["WITH"])?;
            let options = self.options()?;
            let [option] = options.as_slice() else {
                return Err(self.error());
            };
            match (&option.key[..], &option.value) {
                ("SECONDARY_ROLE", OptValue::Nested(inner)) => GroupAction::ModifyReplica {
                    name,
                    secondary_allow: secondary_role(inner)?,
                },
                _ => return Err(near(option)),
            }
        } else if self.eat_words(&["JOIN"]) {
            let mut cluster_type = "WSFC".to_owned();
            if self.eat_words(&["WITH"]) {
                for option in self.options()? {
                    match (option.key.as_str(), atoms(&option)) {
                        ("CLUSTER_TYPE", Some([Token::Word(w)])) => {
                            cluster_type = w.to_ascii_uppercase()
                        }
                        _ => return Err(near(&option)),
                    }
                }
            }
            GroupAction::Join { cluster_type }
        } else if self.eat_words(&["SET"]) {
            let options = self.options()?;
            let [option] = options.as_slice() else {
                return Err(self.error());
            };
            match (option.key.as_str(), atoms(option)) {
                ("WRITE_LEASE_VALIDITY", Some([Token::Number(n)])) => {
                    GroupAction::SetWriteLeaseValidity(u32::try_from(*n).map_err(|_| near(option))?)
                }
                ("REQUIRED_SYNCHRONIZED_SECONDARIES_TO_COMMIT", Some([Token::Number(n)])) => {
                    GroupAction::SetRequiredSynchronizedSecondaries(
                        u32::try_from(*n).map_err(|_| near(option))?,
                    )
                }
                ("ROLE", Some([Token::Word(w)])) if w.eq_ignore_ascii_case("SECONDARY") => {
                    GroupAction::SetRoleSecondary
                }
                _ => return Err(near(option)),
            }
        } else if self.eat_words(&["OFFLINE"]) {
            GroupAction::Offline
        } else if self.eat_words(&["FAILOVER"]) {
            GroupAction::Failover
        } else if self.eat_words(&["FORCE_FAILOVER_ALLOW_DATA_LOSS"]) {
            GroupAction::ForceFailoverAllowDataLoss
        } else if self.eat_words(&["ADD", "DATABASE"]) {
            GroupAction::AddDatabase(self.name()?)
        } else {
            return Err(self.error());
        };
        Ok(action)
    }

    /// `@key = N'…', @value = N'…'` (named or positional), then an optional `, @read_only = …`.
    fn session_context(&mut self) -> Parsed<Statement> {
        let mut values = Vec::new();
        loop {
            if let Some(Token::Word(w)) = self.peek()
                && w.starts_with('@')
            {
                self.at += 1;
                self.punct('=')?;
            }
            values.push(self.next()?);
            if !self.eat_punct(',') {
                break;
            }
        }
        match values.as_slice() {
            [Token::Text(key), Token::Text(value), ..] => Ok(Statement::SetSessionContext {
                key: key.clone(),
                value: value.clone(),
            }),
            _ => Err(self.error()),
        }
    }
}

fn atoms(option: &Opt) -> Option<&[Token]> {
    match &option.value {
        OptValue::Atoms(atoms) => Some(atoms),
        OptValue::Nested(_) => None,
    }
}

fn near(option: &Opt) -> SyntaxError {
    SyntaxError {
        near: option.at.to_string(),
    }
}

fn on_off(word: &str) -> Option<bool> {
    match word.to_ascii_uppercase().as_str() {
        "ON" => Some(true),
        "OFF" => Some(false),
        _ => None,
    }
}

/// `[ALGORITHM AES]` after REQUIRED or SUPPORTED: only AES is emulated.
fn aes_only(rest: &[Token]) -> Option<bool> {
    match rest {
        [] => Some(true),
        [Token::Word(a), Token::Word(aes)]
            if a.eq_ignore_ascii_case("ALGORITHM") && aes.eq_ignore_ascii_case("AES") =>
        {
            Some(true)
        }
        _ => None,
    }
}

fn secondary_role(inner: &[Opt]) -> Parsed<AllowConnections> {
    let mut allow = AllowConnections::No;
    for o in inner {
        match (o.key.as_str(), atoms(o)) {
            ("ALLOW_CONNECTIONS", Some([Token::Word(w)])) => {
                allow = match w.to_ascii_uppercase().as_str() {
                    "NO" => AllowConnections::No,
                    "READ_ONLY" => AllowConnections::ReadOnly,
                    "ALL" => AllowConnections::All,
                    _ => return Err(near(o)),
                }
            }
            _ => return Err(near(o)),
        }
    }
    Ok(allow)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> Statement {
        match parse(sql) {
            Batch::Statements(mut s) if s.len() == 1 => s.remove(0),
            other => panic!("{sql:?}: {other:?}"),
        }
    }

    #[test]
    fn identifiers_and_literals_unescape() {
        assert_eq!(
            lex("[a]]b] N'it''s' 'x' -- comment\n 42").unwrap(),
            [
                Token::Quoted("a]b".into()),
                Token::Text("it's".into()),
                Token::Text("x".into()),
                Token::Number(42)
            ]
        );
        assert!(matches!(parse("SELECT 'open"), Batch::Syntax(_)));
        assert!(matches!(parse("CREATE LOGIN [open"), Batch::Syntax(_)));
    }

    #[test]
    fn the_old_two_queries_still_parse() {
        assert_eq!(one("select 1;"), Statement::SelectOne);
        assert_eq!(one("  SELECT\t@@version ;; "), Statement::SelectVersion);
        assert_eq!(parse("SELECT 2"), Batch::Unknown);
        assert_eq!(parse("SELECT name FROM sys.databases"), Batch::Unknown);
        assert_eq!(parse(""), Batch::Unknown);
        assert_eq!(parse("DROP DATABASE x"), Batch::Unknown);
    }

    #[test]
    fn the_probe() {
        assert_eq!(
            one("SELECT @@SERVERNAME, SERVERPROPERTY('IsHadrEnabled')"),
            Statement::SelectServerNameAndHadr
        );
        assert_eq!(
            one("select @@servername , serverproperty(N'ishadrenabled');"),
            Statement::SelectServerNameAndHadr
        );
    }

    #[test]
    fn state_queries_match_whatever_the_layout() {
        let spread =
            "select AG.name,ag.sequence_number, ag.required_synchronized_secondaries_to_commit,
            ars.role_desc,\n ars.operational_state_desc,
            ars.connected_state_desc, ars.synchronization_health_desc\n\
            FROM sys.availability_groups AS ag JOIN sys.dm_hadr_availability_replica_states AS ars
            ON ars.group_id = ag.group_id WHERE ars.is_local = 1;";
        assert_eq!(one(spread), Statement::State(StateQuery::LocalReplica));
        assert_eq!(one(REPLICAS_QUERY), Statement::State(StateQuery::Replicas));
        assert_eq!(
            one(&LOCAL_DATABASES_QUERY.to_lowercase()),
            Statement::State(StateQuery::LocalDatabases)
        );
        assert_eq!(
            parse(&LOCAL_DATABASES_QUERY.replace("= 1", "= 0")),
            Batch::Unknown
        );
    }

    #[test]
    fn the_endpoint_certificates_query() {
        let spread = "select c.name, certencoded( c.certificate_id ),e.name
            from sys.certificates as c
            left join sys.database_mirroring_endpoints as e
              on e.certificate_id = c.certificate_id;";
        assert_eq!(
            one(spread),
            Statement::State(StateQuery::EndpointCertificates)
        );
        assert_eq!(
            one(ENDPOINT_CERTIFICATES_QUERY),
            Statement::State(StateQuery::EndpointCertificates)
        );
        // Another join is another query, which the double does not run.
        assert_eq!(
            parse(&ENDPOINT_CERTIFICATES_QUERY.replace("LEFT JOIN", "JOIN")),
            Batch::Unknown
        );
    }

    #[test]
    fn security_statements() {
        assert_eq!(
            one("CREATE MASTER KEY ENCRYPTION BY PASSWORD = N'p''w'"),
            Statement::CreateMasterKey {
                password: "p'w".into()
            }
        );
        assert_eq!(
            one("create login [dbm_login] with password = N'x'"),
            Statement::CreateLogin {
                name: "dbm_login".into(),
                password: "x".into()
            }
        );
        assert_eq!(
            one("CREATE USER dbm_user FOR LOGIN [dbm_login]"),
            Statement::CreateUser {
                name: "dbm_user".into(),
                login: "dbm_login".into()
            }
        );
        assert_eq!(
            one(
                "CREATE CERTIFICATE [dbm_cert_0a] AUTHORIZATION [dbm_user] FROM FILE = N'/t/c.pfx'\n\
                 WITH FORMAT = 'PFX', PRIVATE KEY (DECRYPTION BY PASSWORD = N'pw')"
            ),
            Statement::CreateCertificate {
                name: "dbm_cert_0a".into(),
                owner: Some("dbm_user".into()),
                file: "/t/c.pfx".into(),
                decryption_password: Some("pw".into()),
            }
        );
        assert!(matches!(
            parse("CREATE CERTIFICATE c FROM FILE = N'x' WITH FORMAT = 'DER'"),
            Batch::Syntax(_)
        ));
    }

    #[test]
    fn the_endpoint_and_its_grant() {
        assert_eq!(
            one(
                "CREATE ENDPOINT [Hadr_endpoint] STATE = STARTED AS TCP (LISTENER_PORT = 5022, \
                 LISTENER_IP = ALL) FOR DATABASE_MIRRORING (ROLE = ALL, AUTHENTICATION = \
                 CERTIFICATE [dbm_cert_1], ENCRYPTION = REQUIRED ALGORITHM AES)"
            ),
            Statement::CreateEndpoint {
                name: "Hadr_endpoint".into(),
                started: true,
                port: 5022,
                role: "ALL".into(),
                certificate: "dbm_cert_1".into(),
                encryption_required: true,
            }
        );
        assert_eq!(
            one(
                "ALTER ENDPOINT [Hadr_endpoint] FOR DATABASE_MIRRORING (AUTHENTICATION = \
                 CERTIFICATE [dbm_cert_0a1b])"
            ),
            Statement::AlterEndpointCertificate {
                name: "Hadr_endpoint".into(),
                certificate: "dbm_cert_0a1b".into(),
            }
        );
        assert_eq!(
            one("alter endpoint e for database_mirroring (authentication = certificate c);"),
            Statement::AlterEndpointCertificate {
                name: "e".into(),
                certificate: "c".into(),
            }
        );
        // Other ALTER ENDPOINT clauses are not emulated (50000); a broken one does not parse.
        for other in [
            "ALTER ENDPOINT e STATE = STOPPED",
            "ALTER ENDPOINT e FOR DATABASE_MIRRORING (ROLE = PARTNER)",
            "ALTER ENDPOINT e FOR DATABASE_MIRRORING (AUTHENTICATION = WINDOWS NEGOTIATE)",
            "ALTER ENDPOINT e FOR DATABASE_MIRRORING (AUTHENTICATION = CERTIFICATE c, \
             ENCRYPTION = REQUIRED)",
        ] {
            assert_eq!(parse(other), Batch::Unknown, "{other}");
        }
        assert!(matches!(
            parse("ALTER ENDPOINT e FOR DATABASE_MIRRORING (AUTHENTICATION = CERTIFICATE c"),
            Batch::Syntax(_)
        ));
        assert_eq!(
            one("DROP CERTIFICATE [dbm_cert_0a]"),
            Statement::DropCertificate {
                name: "dbm_cert_0a".into()
            }
        );
        assert!(matches!(parse("DROP CERTIFICATE"), Batch::Syntax(_)));
        assert_eq!(
            one("GRANT CONNECT ON ENDPOINT::[Hadr_endpoint] TO [dbm_login];"),
            Statement::GrantConnectOnEndpoint {
                endpoint: "Hadr_endpoint".into(),
                login: "dbm_login".into()
            }
        );
        // Only LISTENER_IP = ALL is emulated.
        assert!(matches!(
            parse(
                "CREATE ENDPOINT e AS TCP (LISTENER_PORT = 5022, LISTENER_IP = (10.0.0.1)) FOR \
                 DATABASE_MIRRORING (AUTHENTICATION = CERTIFICATE c)"
            ),
            Batch::Syntax(_)
        ));
        assert_eq!(
            parse(
                "CREATE ENDPOINT e AS TCP (LISTENER_PORT = 5022, LISTENER_IP = ANY) FOR \
                 DATABASE_MIRRORING (AUTHENTICATION = CERTIFICATE c)"
            ),
            Batch::Syntax(SyntaxError {
                near: "LISTENER_IP".into()
            })
        );
    }

    fn replica(name: &str, allow: AllowConnections) -> ReplicaSpec {
        ReplicaSpec {
            name: name.into(),
            endpoint_url: format!("TCP://{name}.db-pods.ns.svc:5022"),
            availability_mode: "SYNCHRONOUS_COMMIT".into(),
            failover_mode: "EXTERNAL".into(),
            seeding_mode: "AUTOMATIC".into(),
            secondary_allow: allow,
        }
    }

    fn options(name: &str, allow: &str) -> String {
        format!(
            "N'{name}' WITH (ENDPOINT_URL = N'TCP://{name}.db-pods.ns.svc:5022', AVAILABILITY_MODE = \
             SYNCHRONOUS_COMMIT, FAILOVER_MODE = EXTERNAL, SEEDING_MODE = AUTOMATIC, PRIMARY_ROLE \
             (ALLOW_CONNECTIONS = READ_WRITE), SECONDARY_ROLE (ALLOW_CONNECTIONS = {allow}))"
        )
    }

    #[test]
    fn create_availability_group_with_several_replicas() {
        let sql = format!(
            "CREATE AVAILABILITY GROUP [ag1] WITH (DB_FAILOVER = ON, CLUSTER_TYPE = EXTERNAL, \
             WRITE_LEASE_VALIDITY = 4, REQUIRED_SYNCHRONIZED_SECONDARIES_TO_COMMIT = 1) FOR \
             REPLICA ON {}, {}",
            options("db-0", "NO"),
            options("db-1", "READ_ONLY")
        );
        assert_eq!(
            one(&sql),
            Statement::CreateAvailabilityGroup {
                name: "ag1".into(),
                options: GroupOptions {
                    db_failover: true,
                    cluster_type: "EXTERNAL".into(),
                    write_lease_validity: Some(4),
                    required_synchronized_secondaries_to_commit: 1,
                },
                replicas: vec![
                    replica("db-0", AllowConnections::No),
                    replica("db-1", AllowConnections::ReadOnly)
                ],
            }
        );
    }

    #[test]
    fn alter_availability_group_actions() {
        let cases = [
            (
                "GRANT CREATE ANY DATABASE".to_owned(),
                GroupAction::GrantCreateAnyDatabase,
            ),
            (
                format!("ADD REPLICA ON {}", options("db-2", "ALL")),
                GroupAction::AddReplica(replica("db-2", AllowConnections::All)),
            ),
            (
                "REMOVE REPLICA ON N'db-2'".into(),
                GroupAction::RemoveReplica("db-2".into()),
            ),
            (
                "MODIFY REPLICA ON N'db-1' WITH (SECONDARY_ROLE (ALLOW_CONNECTIONS = ALL))".into(),
                GroupAction::ModifyReplica {
                    name: "db-1".into(),
                    secondary_allow: AllowConnections::All,
                },
            ),
            (
                "JOIN WITH (CLUSTER_TYPE = EXTERNAL)".into(),
                GroupAction::Join {
                    cluster_type: "EXTERNAL".into(),
                },
            ),
            (
                "SET (WRITE_LEASE_VALIDITY = 4)".into(),
                GroupAction::SetWriteLeaseValidity(4),
            ),
            (
                "SET (REQUIRED_SYNCHRONIZED_SECONDARIES_TO_COMMIT = 2)".into(),
                GroupAction::SetRequiredSynchronizedSecondaries(2),
            ),
            (
                "set (role = secondary)".into(),
                GroupAction::SetRoleSecondary,
            ),
            ("OFFLINE".into(), GroupAction::Offline),
            ("FAILOVER".into(), GroupAction::Failover),
            (
                "FORCE_FAILOVER_ALLOW_DATA_LOSS".into(),
                GroupAction::ForceFailoverAllowDataLoss,
            ),
            (
                "ADD DATABASE [x]".into(),
                GroupAction::AddDatabase("x".into()),
            ),
        ];
        for (tail, action) in cases {
            assert_eq!(
                one(&format!("ALTER AVAILABILITY GROUP [a]]g] {tail}")),
                Statement::AlterAvailabilityGroup {
                    name: "a]g".into(),
                    action
                },
                "{tail}"
            );
        }
        assert_eq!(
            one("DROP AVAILABILITY GROUP ag"),
            Statement::DropAvailabilityGroup { name: "ag".into() }
        );
        assert!(matches!(
            parse("ALTER AVAILABILITY GROUP ag SET (ROLE = PRIMARY)"),
            Batch::Syntax(_)
        ));
        assert!(matches!(
            parse("ALTER AVAILABILITY GROUP ag DANCE"),
            Batch::Syntax(_)
        ));
    }

    #[test]
    fn the_promote_batch_holds_two_statements_either_way() {
        let expected = vec![
            Statement::SetSessionContext {
                key: "external_cluster".into(),
                value: "yes".into(),
            },
            Statement::AlterAvailabilityGroup {
                name: "ag".into(),
                action: GroupAction::Failover,
            },
        ];
        for separator in [";", "\n", "; \n"] {
            let sql = format!(
                "EXEC sp_set_session_context @key = N'external_cluster', @value = N'yes'\
                 {separator}ALTER AVAILABILITY GROUP [ag] FAILOVER"
            );
            assert_eq!(parse(&sql), Batch::Statements(expected.clone()), "{sql:?}");
        }
        assert_eq!(
            parse("EXECUTE sys.sp_set_session_context N'external_cluster', N'yes'"),
            Batch::Statements(expected[..1].to_vec())
        );
    }

    #[test]
    fn databases_and_the_user_table() {
        assert_eq!(
            one("CREATE DATABASE [x]"),
            Statement::CreateDatabase { name: "x".into() }
        );
        assert_eq!(
            one("ALTER DATABASE [x] SET RECOVERY FULL"),
            Statement::SetRecovery {
                database: "x".into(),
                model: "FULL".into()
            }
        );
        assert_eq!(
            one("BACKUP DATABASE [x] TO DISK = N'/dev/null'"),
            Statement::BackupDatabase {
                database: "x".into(),
                disk: "/dev/null".into()
            }
        );
        assert_eq!(
            one("ALTER DATABASE [x] SET HADR RESUME"),
            Statement::SetHadrResume {
                database: "x".into()
            }
        );
        let table = TableName {
            database: "db".into(),
            schema: "dbo".into(),
            table: "t".into(),
        };
        assert_eq!(
            one("CREATE TABLE [db].[dbo].[t] (id BIGINT NOT NULL PRIMARY KEY)"),
            Statement::CreateTable {
                table: table.clone(),
                column: "id".into()
            }
        );
        assert_eq!(
            one("INSERT INTO [db].[dbo].[t] (id) VALUES (7)"),
            Statement::Insert {
                table: table.clone(),
                value: 7
            }
        );
        assert_eq!(
            one("SELECT id FROM [db].[dbo].[t] ORDER BY id"),
            Statement::SelectColumn {
                table: table.clone(),
                column: "id".into()
            }
        );
        assert_eq!(
            one("SELECT COUNT_BIG(*) FROM [db].[dbo].[t]"),
            Statement::CountRows { table }
        );
        assert_eq!(parse("ALTER DATABASE [x] SET OFFLINE"), Batch::Unknown);
        assert!(matches!(
            parse("ALTER DATABASE [x] SET RECOVERY FAST"),
            Batch::Syntax(_)
        ));
    }
}
