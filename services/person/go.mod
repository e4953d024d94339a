module github.com/personscore/person

go 1.26
