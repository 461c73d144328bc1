"""Reference text the gate measures perplexity on: plain encyclopedic prose, written for this project.

Kept apart from every evaluation set (the benchmarks measure perplexity on SQuAD passages), so
that a rise here is a signal the gate did not select for.
"""

REFERENCE_TEXT: list[str] = [
    "Rivers shape the land they cross. Over thousands of years a river cuts a valley, carries sand and "
    "gravel downstream and drops them where the water slows, building plains and deltas. Many of the "
    "first towns were built beside rivers, because the water was used for drinking, for farming and "
    "for carrying goods by boat. Floods brought fresh soil to the fields but could also destroy homes, "
    "so people learned to build banks, canals and, later, large dams.",
    "A library lends books, newspapers and recordings to the people of a town. Most public libraries "
    "also offer computers, quiet rooms for study and events for children. Books are arranged by subject "
    "so that readers can find related works on the same shelf, and a catalogue lists every item with "
    "its author, title and place. Librarians help visitors search for information and teach them how "
    "to judge whether a source can be trusted.",
    "Bread is made from flour, water, salt and yeast. The yeast feeds on sugars in the dough and "
    "releases carbon dioxide, which forms small bubbles and makes the dough rise. Kneading develops "
    "gluten, a network of proteins that traps the gas and gives bread its chewy texture. The dough is "
    "then shaped and baked in a hot oven, where the crust turns brown and the inside sets into a soft "
    "crumb.",
    "The heart is a muscle that pumps blood through the body. Blood carries oxygen from the lungs to "
    "every organ and brings carbon dioxide back to be breathed out. An adult heart beats about seventy "
    "times a minute at rest and faster during exercise. Regular activity, a balanced diet and enough "
    "sleep help keep the heart healthy, while smoking and high blood pressure raise the risk of "
    "disease.",
    "Computers store information as numbers written in binary, a system that uses only the digits zero "
    "and one. A program is a list of instructions that the processor carries out one after another, "
    "reading and writing values in memory. Programming languages let people write these instructions "
    "in a form that is easier to read, and a compiler or interpreter turns them into the steps the "
    "machine can run.",
    "Forests cover about a third of the land on Earth. Trees take in carbon dioxide from the air and "
    "store carbon in their wood, leaves and roots, while releasing oxygen. Forests are home to many "
    "kinds of animals, plants and fungi, and they protect soil from being washed away by rain. When "
    "forests are cleared for farming or timber, much of that life is lost and the stored carbon returns "
    "to the atmosphere.",
    "Trains move people and goods along fixed tracks. Early railways used steam engines that burned coal "
    "to boil water, while most modern trains run on diesel engines or on electricity taken from "
    "overhead wires. Because steel wheels roll easily on steel rails, a train needs less energy than a "
    "truck to carry the same load. High-speed lines connect large cities and can compete with short "
    "flights.",
    "The Moon travels around the Earth about once every twenty-seven days. It does not make its own "
    "light; we see the part of it that is lit by the Sun, which is why its shape seems to change from a "
    "thin crescent to a full disc and back. The pull of the Moon's gravity raises the tides in the "
    "oceans, and its surface is covered with craters left by ancient impacts.",
]
