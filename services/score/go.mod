module github.com/personscore/score

go 1.26
