"""Common given names, for finding people without a model (and fixing the small model's types).

General knowledge (frequent given names across European, American, Middle Eastern, African and
Asian naming traditions), written by hand after reading the dev half's errors (some common
names may echo it), never the held-out test half. Names that are also everyday
words or places (Will, May, Mark, Grace, Hope, Victoria, Florence, Jordan, Austin, Paris) are
left out: the gazetteer must not turn "May Day" or "Victoria Station" into a person.
"""

from __future__ import annotations

GIVEN_NAMES: frozenset[str] = frozenset(
    """
    aaron abdul abdullah abigail adam adrian adriana agnes ahmed aidan aisha alan albert alberto
    aleksandr aleksandra alex alexander alexandra alexandre alexei alfred ali alice alicia alina
    alison amanda amber amelia amir amit amy ana anastasia anders andrea andreas andrei andrew
    andrzej angela angelica angelo anita ann anna anne annemarie anneli anton antonio arjun arne
    arthur astrid barbara beatriz ben benjamin bernard bettina birgit bjorn björn bogdan boris
    brandon brenda brian bruno camila carl carla carlos carmen carol caroline carsten catarina
    catherine cecilia charles charlotte chen chiara chloe chris christian christina christine
    christoph christopher claire clara claudia colin connor cristina cynthia daniel daniela
    danielle dariusz darren david deborah denis dennis diana diego dimitri dimitris dmitri dmitry
    dominik donald dorothy douglas edith eduardo edward elena eleni elias elif elisa elisabeth
    elizabeth ella ellen emil emilia emily emma enrique eric erik erika ernst esther eva evelyn
    fabio fatima federica felix fernando filip filippo francesca francesco francisco franz
    friedrich gabriel gabriela gabriele gareth gary georg george georgios gerhard giorgio
    giovanni giulia giuseppe gordon greta gregory gustav hana hannah hans harald harry hassan
    heather heidi heinz helen helena helga henrik henry hiroshi holger hugo ian ibrahim igor
    ilona ines inga ingrid irene irina isabel isabella ivan ivana jacob jakub james jan jana
    jane janet janina jasmine jason javier jean jennifer jens jeremy jessica jiri joanna joao
    joaquin joel johan johann johanna john jonas jonathan jorge jose josef joseph joshua juan
    judith julia julian juliana julie justin kamil karen karin karl karolina katarina katarzyna
    kate katherine kathleen katie katrin kelly kenji kenneth kevin kim klaus krisztina krzysztof
    kyle lara laura lauren laurent lea leah lena leon leonardo linda lisa lorenzo louis louise
    lucas lucia luis luisa lukas luca lydia magdalena maja malik manuel marc marcel marcin marco
    marcus margaret margarita maria mariana marie marina mario marion marius marta martin martina
    mary mateusz matthew matthias mauro max maximilian megan mehmet melissa michael michaela
    michal michelle miguel mikael mikhail milan miroslav mohamed mohammed monica monika nadia
    natalia natalie nathan nicholas nicola nicolas nicole niels nikolai nikolaos nina noah nora
    oleg olga oliver olivia omar oscar pablo pamela patricia patrick paul paula pavel pedro peter
    petr petra philip philipp pierre pietro piotr rachel rafael raquel rebecca renata rene
    ricardo richard robert roberto robin roman ronald rosa ruth ryan sabine sabrina samuel sandra
    sara sarah sebastian sergei sergey sergio simon simone sofia sonia sophia sophie stefan
    stefano stephanie stephen steven susan susanne svetlana sven tamara tanja tatiana teresa
    thomas tim timothy tobias tomas tomasz tony ursula valentina valerie vanessa vera veronica
    viktor vincent vladimir walter wei werner william wojciech wolfgang xavier yannick yasmin
    yuki yuri yusuf zoe zofia zoltan agata alessandro alessia ambra arturo bianca bruna
    dario elio enzo flavia gianni ilaria livia loredana matteo nadia noemi piero raffaele
    silvia tiziana ugo vittoria agnieszka beata bozena danuta ewa grazyna halina jolanta
    malgorzata marek pawel tadeusz urszula zbigniew zuzana jaroslav ladislav lubomir milos
    radek vaclav vlasta zdenek jovan dragan goran milica nebojsa zoran dusan bojan ljubica
    ferenc gabor istvan janos laszlo sandor tibor zsofia zsuzsanna ildiko erzsebet katalin
    aino eino juha kari markku mikko pekka sari tuula ville aleksi helmi ilkka jukka lauri
    arvid bengt birgitta einar gunnar hakan ingrid jorgen kristian lars lasse leif magnus
    mats nils olaf ole per rasmus sigrid solveig stig tor torben ulf anette annika freja
    hilde ida karina mette nanna pernille signe trine gudrun sigurdur jon helga bjarni
    kostas nikos yannis eleftheria vasiliki panagiotis spyros stavros theodoros sotiris
    mustafa ahmet emre fatih hakan murat ozan yusuf zeynep ayse fatma emine hatice
    aditya anil anjali deepak divya kiran krishna lakshmi manoj neha pooja priya rahul raj
    rajesh ravi sanjay sunil vijay hiroko kazuo keiko takashi yoko akira haruto sakura
    wei ming li jun xiao hui yan mei ling jin hyun seo min ji
    kwame kofi amara chidi ngozi oluwaseun tunde adebayo fatou moussa aminata
    alejandro alfonso alvaro andres beatriz catalina cristobal esteban federico gonzalo
    guadalupe ignacio isabela jimena leticia lorena marcela mercedes nicolas paloma ramon
    rodrigo santiago sergio valeria ximena joao gonçalo rui tiago duarte ines leonor
    sean seamus conor liam niamh siobhan aoife ciara declan eoin ronan cian oisin padraig
    brendan fiona kieran cormac maeve orla dermot fergus bridget sinead eamon
    """.split()  # noqa: SIM905 (a word list)
)
