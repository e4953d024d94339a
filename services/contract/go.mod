module github.com/personscore/contract

go 1.26.0
