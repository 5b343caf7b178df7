"""The synthetic demonstration set: procedural hands (:mod:`.hand`) drawn into frames (:mod:`.render`)
and written in HaGRID's v2 layout (:mod:`.generate`)."""
