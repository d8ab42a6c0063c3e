module mssql-operator.invalid/hack/peer

go 1.26.0

require github.com/mariadb-operator/mariadb-operator/v25 v25.10.4
